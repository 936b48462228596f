"""The job API: submit a job, poll it and cancel it, for every request type in
``jobs.request_types``, and list the caller's jobs of every type.

Views only translate HTTP; the per-type ones are built once per request type by ``jobs/urls.py``.
"""

from __future__ import annotations

import functools
import math
from datetime import datetime
from typing import Any
from uuid import UUID

from django.http import HttpRequest
from django.urls import get_script_prefix, reverse
from django.utils import timezone

from gateway.access.budgets import key_usage
from gateway.access.principals import Principal
from jobs import services
from jobs.api_schema import JobListSchema, JobOperationSchema, UsageSchema
from jobs.endpoint import Answer, JobEndpoint
from jobs.idempotency import REPLAYED_HEADER, earlier_job, idempotent_submit, replayed_job
from jobs.listing import read_list_query
from jobs.models import TERMINAL_STATUSES, AsyncJob
from jobs.request_types import RequestKind
from jobs.selectors import get_visible_job, list_visible_jobs
from jobs.serializers import AsyncJobSerializer, JobListSerializer
from jobs.sql import PolledJob
from jobs.submission import read_submission
from jobs.ttl import result_ttl_from
from jobs.usage import UsageSerializer, usage_key
from jobs.webhooks.header import webhook_from


def poll_location(request: HttpRequest, kind: RequestKind, job_id: UUID) -> str:
    """The absolute URL a job is polled at (the ``Location`` of a 202)."""
    prefix = _poll_path_prefix(get_script_prefix(), f"poll-{kind.name}")
    return request.build_absolute_uri(prefix + str(job_id))


@functools.lru_cache(maxsize=64)
def _poll_path_prefix(script_prefix: str, url_name: str) -> str:
    # Poll paths differ only in their last segment; reversing the URLconf for every submit
    # costs more than the INSERT's SQL. Keyed by the script prefix reverse() itself uses.
    placeholder = "00000000-0000-0000-0000-000000000000"
    return reverse(url_name, args=[placeholder]).removesuffix(placeholder)


# A 202 poll's Retry-After: soon while a job is young (most finish within seconds), then a
# tenth of its age, so a long job is not polled hundreds of times; never more than a minute.
RETRY_AFTER_YOUNG_SECONDS = 10.0
RETRY_AFTER_MAX_SECONDS = 60


def retry_after(created_at: datetime, now: datetime) -> int:
    """Seconds a client should wait before polling an unfinished job again (at least 1)."""
    age = (now - created_at).total_seconds()
    if age < RETRY_AFTER_YOUNG_SECONDS:
        return 1
    return min(math.ceil(age / 10), RETRY_AFTER_MAX_SECONDS)


class JobView(JobEndpoint):
    kind: RequestKind | None = None  # set by as_view(kind=...)
    operation = ""  # what it does to a job of its kind, for the API document
    schema = JobOperationSchema()

    @property
    def request_type(self) -> str:
        """Named in the errors' ``extra_fields``."""
        assert self.kind is not None
        return self.kind.request_type.value

    @property
    def metric_request_type(self) -> str:  # type: ignore[override]
        return self.request_type


class SubmitJobView(JobView):
    operation = "submit"
    model_requested: str | None = None  # named in errors once the body is parsed

    def post(self, request: HttpRequest, principal: Principal, data: Any) -> Answer:
        assert self.kind is not None
        model = data.get("model") if isinstance(data, dict) else None
        self.model_requested = model if isinstance(model, str) and "/" in model else None
        result_ttl = result_ttl_from(request)
        once = idempotent_submit(request, principal, self.kind, data, result_ttl)
        if once is not None and (earlier := earlier_job(once)) is not None:
            return self._accepted(request, earlier, replayed=True)
        submission = read_submission(self.kind, data, principal)
        webhook = webhook_from(request, principal)
        try:
            job = services.submit_job(
                principal=principal,
                request_type=self.kind.request_type,
                provider=submission.primary.provider,
                model=submission.primary.model,
                fallbacks=submission.fallbacks,
                request=submission.params,
                result_ttl=result_ttl,
                idempotency=once,
                webhook=webhook,
            )
        except services.IdempotencyKeyTaken as taken:
            return self._accepted(request, replayed_job(taken.idempotency), replayed=True)
        return self._accepted(request, job)

    def _accepted(
        self, request: HttpRequest, job: AsyncJob | PolledJob, *, replayed: bool = False
    ) -> Answer:
        """202: the job as a poll reads it, and where to poll it."""
        assert self.kind is not None
        headers = {"Location": poll_location(request, self.kind, job.id)}
        if replayed:
            headers[REPLAYED_HEADER] = "true"
        return Answer(AsyncJobSerializer.render(job), 202, headers)


class PollJobView(JobView):
    operation = "poll"

    def get(self, request: HttpRequest, principal: Principal, data: Any, job_id: str) -> Answer:
        job = get_visible_job(job_id, principal, self.request_type)
        if job.status in TERMINAL_STATUSES:
            return Answer(AsyncJobSerializer.render(job), 200)
        wait = retry_after(job.created_at, timezone.now())
        return Answer(AsyncJobSerializer.render(job), 202, {"Retry-After": str(wait)})


class CancelJobView(JobView):
    """Stop a pending or processing job; it becomes ``cancelled``, a terminal state."""

    operation = "cancel"
    takes_body = False  # like OpenAI's cancel routes: a bare POST

    def post(self, request: HttpRequest, principal: Principal, data: Any, job_id: str) -> Answer:
        job = services.cancel_job(job_id, principal, self.request_type)
        return Answer(AsyncJobSerializer.render(job), 200)


class ListJobsView(JobEndpoint):
    """The caller's jobs of every request type, newest first, a page at a time."""

    schema = JobListSchema()

    def get(self, request: HttpRequest, principal: Principal, data: Any) -> Answer:
        query = read_list_query(request.GET, principal)
        return Answer(JobListSerializer.render(list_visible_jobs(principal, query)), 200)


class UsageView(JobEndpoint):
    """A key's spend and usage in its current budget period, in all and per model."""

    schema = UsageSchema()

    def get(self, request: HttpRequest, principal: Principal, data: Any) -> Answer:
        key = usage_key(request.GET, principal)
        return Answer(UsageSerializer.render_usage(key_usage(key)), 200)
