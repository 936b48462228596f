"""Reads of jobs, scoped to the caller."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from gateway.access.models import VirtualKey
from gateway.access.principals import Principal
from gateway.http.errors import InvalidRequest, NotFound
from jobs import sql
from jobs.listing import JobListQuery
from jobs.models import AsyncJob, JobStatus
from jobs.sql import POLL_FIELDS, PolledJob


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


@dataclass(frozen=True)
class JobPage:
    """One page of the job list, newest first; ``has_more``: older jobs follow it."""

    jobs: list[PolledJob]
    has_more: bool


def list_visible_jobs(principal: Principal, query: JobListQuery) -> JobPage:
    """The caller's unexpired jobs (an admin's: everyone's, or one key's), newest first, from
    just after the ``after`` job; ties on ``created_at`` are ordered by id."""
    found = [PolledJob(*row) for row in page_query(principal, query)]
    return JobPage(found[: query.limit], has_more=len(found) > query.limit)


def page_query(principal: Principal, query: JobListQuery) -> QuerySet[AsyncJob, tuple[Any, ...]]:
    """The rows of a page and one more (is there a next page?), as POLL_FIELDS tuples.

    The order is the list indexes' (``job_key_list_idx``, ``job_list_idx``), so a page reads
    ``limit + 1`` index entries and rows, not the caller's whole history. The request itself is
    never read back, as for a poll.
    """
    owned = _owned_by(principal, query.key)
    jobs = owned.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
    if query.status is not None:
        jobs = jobs.filter(status=query.status)
    if query.request_type is not None:
        jobs = jobs.filter(request_type=query.request_type)
    if query.after is not None:
        # The cursor is a position: any job of the caller's marks it, expired or of another
        # type or status, so a page boundary that expires meanwhile does not break the walk.
        anchor = owned.filter(pk=query.after).values_list("created_at", flat=True).first()
        if anchor is None:
            raise InvalidRequest(
                f"after: no job {str(query.after)!r} of this caller to list from.",
                param="after",
                code="invalid_cursor",
            )
        # The first condition is implied by the second; it is there for the planner, which
        # starts the index walk at the cursor with it instead of filtering every newer entry.
        jobs = jobs.filter(created_at__lte=anchor).filter(
            Q(created_at__lt=anchor) | Q(created_at=anchor, pk__lt=query.after)
        )
    return jobs.order_by("-created_at", "-id").values_list(*POLL_FIELDS)[: query.limit + 1]


def _owned_by(principal: Principal, key_name: str | None) -> QuerySet[AsyncJob]:
    """Every job the caller may list: a key's own; an admin's, all or the named key's."""
    jobs = AsyncJob.objects.all()
    if not principal.is_admin:
        owner = principal.virtual_key.pk if principal.virtual_key is not None else None
        return jobs.filter(virtual_key_id=owner)
    if key_name is None:
        return jobs
    key_id = VirtualKey.objects.filter(name=key_name).values_list("pk", flat=True).first()
    if key_id is None:
        raise InvalidRequest(
            f"key: no virtual key named {key_name!r}.", param="key", code="invalid_parameter"
        )
    return jobs.filter(virtual_key_id=key_id)


def pending_summary() -> tuple[int, datetime | None]:
    """How many jobs are pending, and when the oldest of them was submitted (through the
    engines' partial index of pending jobs, ``job_pending_created_idx``)."""
    summary = AsyncJob.objects.filter(status=JobStatus.PENDING).aggregate(
        count=Count("pk"), oldest=Min("created_at")
    )
    return summary["count"], summary["oldest"]
