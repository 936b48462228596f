"""Reads of jobs, scoped to the caller."""

from __future__ import annotations

import uuid

from django.utils import timezone

from gateway.access.principals import Principal
from gateway.http.errors import NotFound
from jobs import sql
from jobs.sql import PolledJob


def get_visible_job(job_id: str, principal: Principal, request_type: str) -> PolledJob:
    """The job, if this caller may see it; 404 alike for unknown, expired, foreign, other type.

    The job is read by primary key alone (the poll's SELECT, written out: see jobs/sql.py); its
    type and owner are compared here.
    """
    try:
        pk = uuid.UUID(job_id)
    except ValueError:
        raise _not_found(job_id, request_type) from None
    job = sql.read_polled_job(pk)
    owner = principal.virtual_key.pk if principal.virtual_key is not None else None
    if (
        job is None
        or job.request_type != request_type
        or (not principal.is_admin and job.virtual_key_id != owner)
        or (job.expires_at is not None and job.expires_at <= timezone.now())
    ):
        raise _not_found(job_id, request_type)
    return job


def _not_found(job_id: str, request_type: str) -> NotFound:
    return NotFound(
        f"No {request_type} job with id {job_id!r}.",
        code="job_not_found",
        request_type=request_type,
    )
