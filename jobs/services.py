"""Writes to jobs: submit, claim, finish, lease renewal, re-dispatch, retry and purge.

Views, the worker engine, beat tasks and admin actions all go through these functions. Every state
change is a conditional UPDATE on the current state, so duplicate deliveries and late workers
cannot write twice.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from gateway.errors import error_body
from gateway.principals import Principal
from jobs.dispatch import dispatch
from jobs.models import AsyncJob, JobStatus

logger = logging.getLogger(__name__)


def submit_job(
    *,
    principal: Principal,
    request_type: str,
    provider: str,
    model: str,
    fallbacks: list[str],
    request: dict[str, Any],
    result_ttl: int,
) -> AsyncJob:
    with transaction.atomic():
        job = AsyncJob.objects.create(
            request_type=request_type,
            virtual_key=principal.virtual_key,
            provider=provider,
            model=model,
            fallbacks=fallbacks,
            request=request,
            result_ttl=result_ttl,
            dispatched_at=timezone.now(),
        )
        transaction.on_commit(lambda: dispatch([job.id]))
    return job


def claim_job(job_id: UUID | str, worker_id: str) -> AsyncJob | None:
    """pending -> processing under a lease for this worker; None if someone else has it."""
    now = timezone.now()
    claimed = AsyncJob.objects.filter(pk=job_id, status=JobStatus.PENDING).update(
        status=JobStatus.PROCESSING,
        claimed_by=worker_id,
        lease_expires_at=now + timedelta(seconds=settings.GATEWAY_JOB_LEASE_SECONDS),
        started_at=now,
        attempts=F("attempts") + 1,
    )
    if not claimed:
        return None
    return AsyncJob.objects.filter(pk=job_id).first()


def finish_job(
    job_id: UUID | str,
    worker_id: str,
    *,
    result_ttl: int,
    status_code: int,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> bool:
    """Write the terminal state, once: only the worker holding the job may, only while it does."""
    now = timezone.now()
    written = AsyncJob.objects.filter(
        pk=job_id, status=JobStatus.PROCESSING, claimed_by=worker_id
    ).update(
        status=JobStatus.FAILED if error is not None else JobStatus.COMPLETED,
        completed_at=now,
        expires_at=now + timedelta(seconds=result_ttl),
        status_code=status_code,
        result=result,
        error=error,
        lease_expires_at=None,
    )
    return written == 1


def renew_leases(worker_id: str, job_ids: list[str]) -> int:
    if not job_ids:
        return 0
    lease = timezone.now() + timedelta(seconds=settings.GATEWAY_JOB_LEASE_SECONDS)
    return AsyncJob.objects.filter(
        pk__in=job_ids, status=JobStatus.PROCESSING, claimed_by=worker_id
    ).update(lease_expires_at=lease)


def release_jobs(worker_id: str, job_ids: list[str]) -> int:
    """Give unfinished jobs back on shutdown; the try does not count against the job."""
    if not job_ids:
        return 0
    released = AsyncJob.objects.filter(
        pk__in=job_ids, status=JobStatus.PROCESSING, claimed_by=worker_id
    ).update(
        status=JobStatus.PENDING,
        claimed_by="",
        lease_expires_at=None,
        attempts=F("attempts") - 1,
        dispatched_at=timezone.now(),
    )
    dispatch(job_ids)
    return released


def abandoned_error(job: AsyncJob) -> dict[str, Any]:
    return error_body(
        status_code=500,
        error_type="api_error",
        code="job_abandoned",
        message=f"The job's worker stopped {job.attempts} times before finishing it; "
        "the gateway gave up.",
        provider=job.provider,
        model_requested=job.model_requested,
        request_type=job.request_type,
    )


def redispatch_stale_jobs(limit: int = 1000) -> dict[str, int]:
    """Recover jobs whose worker died (lease expired) and jobs no worker picked up in time."""
    now = timezone.now()
    counts = {"failed": 0, "requeued": 0, "redispatched": 0}
    stale = list(
        AsyncJob.objects.filter(status=JobStatus.PROCESSING, lease_expires_at__lt=now).only(
            "id", "attempts", "provider", "model", "request_type", "result_ttl", "claimed_by"
        )[:limit]
    )
    requeue: list[UUID] = []
    for job in stale:
        if job.attempts >= settings.GATEWAY_JOB_MAX_ATTEMPTS:
            failed = AsyncJob.objects.filter(
                pk=job.pk, status=JobStatus.PROCESSING, lease_expires_at__lt=now
            ).update(
                status=JobStatus.FAILED,
                completed_at=now,
                expires_at=now + timedelta(seconds=job.result_ttl),
                status_code=500,
                error=abandoned_error(job),
                lease_expires_at=None,
            )
            counts["failed"] += failed
        elif AsyncJob.objects.filter(
            pk=job.pk, status=JobStatus.PROCESSING, lease_expires_at__lt=now
        ).update(status=JobStatus.PENDING, claimed_by="", lease_expires_at=None, dispatched_at=now):
            requeue.append(job.pk)
    counts["requeued"] = len(requeue)

    cutoff = now - timedelta(seconds=settings.GATEWAY_REDISPATCH_AFTER)
    waiting = list(
        AsyncJob.objects.filter(status=JobStatus.PENDING, dispatched_at__lt=cutoff).values_list(
            "pk", flat=True
        )[:limit]
    )
    if waiting:
        AsyncJob.objects.filter(pk__in=waiting, status=JobStatus.PENDING).update(dispatched_at=now)
    counts["redispatched"] = len(waiting)
    dispatch(requeue + waiting)
    if any(counts.values()):
        logger.info("stale jobs: %s", counts)
    return counts


def retry_job(job: AsyncJob) -> bool:
    """Run a failed job again from the start (admin action)."""
    reset = AsyncJob.objects.filter(pk=job.pk, status=JobStatus.FAILED).update(
        status=JobStatus.PENDING,
        attempts=0,
        claimed_by="",
        lease_expires_at=None,
        started_at=None,
        completed_at=None,
        expires_at=None,
        status_code=None,
        result=None,
        error=None,
        dispatched_at=timezone.now(),
    )
    if reset:
        transaction.on_commit(lambda: dispatch([job.pk]))
    return bool(reset)


def purge_expired_jobs(*, batch_size: int | None = None, time_budget: float = 50.0) -> int:
    """Delete jobs whose result TTL has passed, in batches, within a time budget."""
    batch_size = batch_size or settings.GATEWAY_PURGE_BATCH_SIZE
    deadline = time.monotonic() + time_budget
    total = 0
    while time.monotonic() < deadline:
        now = timezone.now()
        ids = list(
            AsyncJob.objects.filter(expires_at__lte=now)
            .order_by("expires_at")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            break
        deleted, _ = AsyncJob.objects.filter(pk__in=ids, expires_at__lte=now).delete()
        total += deleted
        if len(ids) < batch_size:
            break
    if total:
        logger.info("purged %d expired jobs", total)
    return total
