from django.urls import path

from jobs.views import PollCompletionView, SubmitCompletionView

urlpatterns = [
    path("async/completions", SubmitCompletionView.as_view(), name="submit-completion"),
    path("async/completions/<str:job_id>", PollCompletionView.as_view(), name="poll-completion"),
]
