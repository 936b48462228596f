from django.urls import path

from jobs.request_types import KINDS
from jobs.views import CancelJobView, ListJobsView, PollJobView, SubmitJobView, UsageView

# The request types' routes first: they take nearly every request, and Django tries the
# patterns in order.
urlpatterns = [
    *(
        route
        for kind in KINDS
        for route in (
            path(kind.path, SubmitJobView.as_view(kind=kind), name=f"submit-{kind.name}"),
            path(
                f"{kind.path}/<str:job_id>",
                PollJobView.as_view(kind=kind),
                name=f"poll-{kind.name}",
            ),
            path(
                f"{kind.path}/<str:job_id>/cancel",
                CancelJobView.as_view(kind=kind),
                name=f"cancel-{kind.name}",
            ),
        )
    ),
    path("async/jobs", ListJobsView.as_view(), name="list-jobs"),
    path("usage", UsageView.as_view(), name="usage"),
]
