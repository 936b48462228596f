from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularRedocView

from gateway.health import HealthView, ReadyView
from gateway.metrics import metrics_view
from gateway.middleware import ADMIN_PATH

urlpatterns = [
    path("v1/", include("jobs.urls")),
    path("health", HealthView.as_view(), name="health"),
    path("ready", ReadyView.as_view(), name="ready"),
    path("metrics", metrics_view, name="metrics"),
    path("openapi.json", SpectacularJSONAPIView.as_view(), name="openapi"),
    path(
        "docs/",
        SpectacularRedocView.as_view(url_name="openapi", template_name="gateway/redoc.html"),
        name="docs",
    ),
    path(ADMIN_PATH.removeprefix("/"), admin.site.urls),
]

handler400 = "gateway.http.errors.handler400"
handler403 = "gateway.http.errors.handler403"
handler404 = "gateway.http.errors.handler404"
handler500 = "gateway.http.errors.handler500"
