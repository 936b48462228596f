"""``GET /metrics``: the Prometheus text of every process's samples, and the job queue now.

Readable with an admin JWT, or with ``Authorization: Bearer <GATEWAY_METRICS_TOKEN>`` when that
setting is set (a scraper's token, compared in constant time); anyone else gets the API's 401.
The samples are summed from GATEWAY_METRICS_DIR (``jobs.metrics``); the pending jobs' count and
the oldest one's age are read from the database at each scrape.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from rest_framework.exceptions import MethodNotAllowed

from gateway.access.authentication import authenticate_request
from gateway.http.errors import AuthenticationRequired, error_answer, error_headers
from jobs.selectors import pending_summary


class PendingJobsCollector(Collector):
    """The queue as the database has it now: one aggregate over the pending jobs' index."""

    def collect(self) -> Iterator[Metric]:
        count, oldest = pending_summary()
        age = (timezone.now() - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily("gateway_jobs_pending", "Jobs waiting for a worker.", value=count)
        yield GaugeMetricFamily(
            "gateway_oldest_pending_job_age_seconds",
            "Seconds since the oldest pending job was submitted (0 when none is pending).",
            value=max(age, 0.0),
        )


def _check_reader(request: HttpRequest) -> None:
    """An admin JWT, or the metrics token; AuthenticationRequired for anything else."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    expected = settings.GATEWAY_METRICS_TOKEN
    if (
        expected
        and scheme.lower() == "bearer"
        and hmac.compare_digest(token.strip().encode(), expected.encode())
    ):
        return
    principal = authenticate_request(request.META)
    if principal is None:
        raise AuthenticationRequired(
            "Reading metrics takes an admin token or the metrics token.", code="missing_api_key"
        )
    if not principal.is_admin:
        raise AuthenticationRequired("Reading metrics takes an admin token or the metrics token.")


def metrics_view(request: HttpRequest) -> HttpResponse:
    try:
        if request.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(request.method or "")
        _check_reader(request)
    except (AuthenticationRequired, MethodNotAllowed) as exc:
        answer = error_answer(exc)
        assert answer is not None
        body, status = answer
        headers = {**error_headers(status), **({"Allow": "GET, HEAD"} if status == 405 else {})}
        return JsonResponse(body, status=status, headers=headers)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(PendingJobsCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
