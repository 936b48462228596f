"""Reads of jobs, scoped to the caller."""

from __future__ import annotations

import uuid

from django.utils import timezone

from gateway.errors import NotFound
from gateway.principals import Principal
from jobs.models import AsyncJob


def get_visible_job(job_id: str, principal: Principal, request_type: str) -> AsyncJob:
    """The job, if this caller may see it; 404 alike for unknown, expired, foreign, other type."""
    not_found = NotFound(
        f"No {request_type} job with id {job_id!r}.",
        code="job_not_found",
        request_type=request_type,
    )
    try:
        pk = uuid.UUID(job_id)
    except ValueError:
        raise not_found from None
    jobs = AsyncJob.objects.filter(pk=pk, request_type=request_type)
    if not principal.is_admin:
        jobs = jobs.filter(virtual_key=principal.virtual_key)
    job = jobs.first()
    if job is None or (job.expires_at is not None and job.expires_at <= timezone.now()):
        raise not_found
    return job
