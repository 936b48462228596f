"""Writes to jobs: submit, claim, finish, cancel, lease renewal, re-dispatch, retry and purge.

Views, the worker engine, beat tasks and admin actions all go through these functions. Every state
change is a conditional UPDATE on the current state, so duplicate deliveries and late workers
cannot write twice.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, router, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from gateway.access.principals import Principal
from gateway.http.errors import GatewayError, error_body
from jobs import limits, metrics, sql
from jobs.budget import ensure_within_budget
from jobs.charges import charge_for, charged_fields, record_charges
from jobs.dispatch import dispatch, dispatch_soon
from jobs.idempotency import IDEMPOTENCY_WINDOW, IdempotentSubmit
from jobs.models import ACTIVE_STATUSES, AsyncJob, IdempotencyKey, JobStatus
from jobs.selectors import get_visible_job
from jobs.sql import PolledJob
from jobs.token_usage import token_usage
from jobs.webhooks.models import WebhookEndpoint
from jobs.webhooks.services import add_delivery, enqueue_deliveries

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
    idempotency: IdempotentSubmit | None = None,
    webhook: WebhookEndpoint | None = None,
) -> AsyncJob:
    """Write a new job; with ``idempotency``, its key in the same transaction, or
    IdempotencyKeyTaken (and no job) when another submit holds the key; with ``webhook``, its
    delivery (waiting for the job to end) in the same transaction. A key whose budget is spent
    gets BudgetExceeded (402) and no job; a key with limits that it has reached gets
    TooManyRequests (429), and nothing is written (jobs/limits.py)."""
    # One INSERT: in autocommit it is committed when it returns, before the client hears 202,
    # and on_commit then rings at once (inside a caller's transaction, after its commit).
    # A key with limits or a budget makes it one gated INSERT (jobs/limits.py).
    now = timezone.now()
    gate = limits.gate_for(principal.virtual_key, now)
    job = AsyncJob(
        request_type=request_type,
        virtual_key=principal.virtual_key,
        provider=provider,
        model=model,
        fallbacks=fallbacks,
        request=request,
        result_ttl=result_ttl,
        dispatched_at=now,
        counted=gate is not None,
    )
    # A key's first submit under limits makes its counters row, then tries again; a retry may
    # also find the room a refusal saw taken already.
    for _ in range(_GATE_TRIES):
        try:
            if idempotency is not None:
                _insert_with_key(job, idempotency, webhook, gate)
            elif webhook is not None:
                with transaction.atomic(using=router.db_for_write(AsyncJob)):
                    _insert(job, gate)
                    add_delivery(job, webhook)
            else:
                _insert(job, gate)
            break
        except limits.LimitReached:
            assert gate is not None
            ensure_within_budget(principal)  # 402 when the budget refused it
            refused = limits.refusal(gate, now)
            if refused is not None:
                raise refused from None
    else:
        raise limits.busy()
    transaction.on_commit(dispatch_soon, using=job._state.db)
    return job


_GATE_TRIES = 3


def _insert(job: AsyncJob, gate: sql.KeyGate | None) -> None:
    """AsyncJob.objects.create's work, written out (jobs/sql.py); under the key's limits when
    it has any, or LimitReached and nothing written."""
    if gate is None:
        sql.insert_job(job)
    elif not sql.insert_counted_job(job, gate):
        raise limits.LimitReached


class IdempotencyKeyTaken(Exception):
    """Another submit with this idempotency key committed first; no job was written."""

    def __init__(self, idempotency: IdempotentSubmit) -> None:
        super().__init__("idempotency key taken")
        self.idempotency = idempotency


def _insert_with_key(
    job: AsyncJob,
    idempotency: IdempotentSubmit,
    webhook: WebhookEndpoint | None,
    gate: sql.KeyGate | None,
) -> None:
    """The job and its key in one transaction, so neither is ever written without the other.

    The key's unique constraint decides a race: on Postgres the second INSERT waits for the
    first transaction and fails once it commits; SQLite writes one transaction at a time.
    """
    now = timezone.now()
    scope = {"virtual_key": idempotency.virtual_key, "key": idempotency.key}
    try:
        with transaction.atomic(using=router.db_for_write(IdempotencyKey)):
            # A key whose window has passed but which the purge has not reached yet is free.
            stale = now - IDEMPOTENCY_WINDOW
            IdempotencyKey.objects.filter(**scope, created_at__lte=stale).delete()
            _insert(job, gate)
            IdempotencyKey.objects.create(
                **scope, fingerprint=idempotency.fingerprint, job=job, created_at=now
            )
            if webhook is not None:
                add_delivery(job, webhook)
    except IntegrityError as exc:
        raise IdempotencyKeyTaken(idempotency) from exc


def claim_pending_jobs(limit: int, worker_id: str) -> list[AsyncJob]:
    """Claim up to ``limit`` pending jobs: pending -> processing under a lease. The keys with the
    fewest jobs processing go first, each key's oldest job first (``sql.claim_pending``), so one
    key's backlog never holds back another key's jobs."""
    now = timezone.now()
    ids = sql.claim_pending(
        limit=limit,
        worker_id=worker_id,
        now=now,
        lease=now + timedelta(seconds=settings.GATEWAY_JOB_LEASE_SECONDS),
    )
    if not ids:
        return []
    return list(AsyncJob.objects.filter(pk__in=ids).order_by("created_at"))


@dataclass(frozen=True)
class Finish:
    """A terminal state to write for one job."""

    job_id: UUID | str
    result_ttl: int
    status_code: int
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    served_by: str | None = None  # "provider/model" that produced the result
    virtual_key_id: int | None = None  # whose spend the result is charged to
    key_name: str = ""  # the key's name, as the metrics label it


def finish_jobs(worker_id: str, finishes: list[Finish]) -> list[bool]:
    """Write terminal states, once each: only the worker holding a job may, only while it does.

    One transaction for the batch, one prepared UPDATE per job; the answer says which were
    written (False: the job is no longer this worker's). The webhook deliveries of the jobs
    written are made due in the same transaction, and their charges (written with the state)
    are added to the key's spend in it too (``jobs.charges``): a job is charged once, by the
    write of its terminal state.
    """
    if not finishes:
        return []
    now = timezone.now()
    charges = [charge_for(f.result, f.served_by, f.virtual_key_id) for f in finishes]
    rows = [
        (
            finish.job_id,
            {
                "status": JobStatus.FAILED if finish.error is not None else JobStatus.COMPLETED,
                "completed_at": now,
                "expires_at": now + timedelta(seconds=finish.result_ttl),
                "status_code": finish.status_code,
                "result": finish.result,
                "error": finish.error,
                **charged_fields(charge),
            },
        )
        for finish, charge in zip(finishes, charges, strict=True)
    ]
    with transaction.atomic(using=router.db_for_write(AsyncJob)):
        written = sql.finish(rows, processing=JobStatus.PROCESSING.value, worker_id=worker_id)
        enqueue_deliveries(row[0] for row, ok in zip(rows, written, strict=True) if ok)
        ended = [f for f, ok in zip(finishes, written, strict=True) if ok]
        limits.count_finished({f.job_id: token_usage(f.result).total for f in ended}, now)
        record_charges(now, (c for c, ok in zip(charges, written, strict=True) if ok and c))
    for finish, charge, ok in zip(finishes, charges, written, strict=True):
        if ok and charge is not None:
            metrics.count_cost(finish.key_name, charge.model.partition("/")[2], charge.cost_usd)
    return written


class JobNotCancellable(GatewayError):
    status_code = 409
    code = "job_not_cancellable"


def cancel_job(job_id: str, principal: Principal, request_type: str) -> PolledJob:
    """Cancel a pending or processing job the caller may see; answer it as a poll would.

    One conditional UPDATE decides: a cancel racing a worker's finish (or another cancel) has
    exactly one winner, since each writes only where the job is still pending or processing.
    A pending job is then never claimed; a processing one's worker notices (``cancelled_among``)
    and stops its call, and its finish, conditional on ``processing``, writes nothing.
    Unknown, expired, foreign and other-type jobs are the poll's 404; ended ones a 409.
    """
    job = get_visible_job(job_id, principal, request_type)
    if job.status not in ACTIVE_STATUSES:
        raise _not_cancellable(job)
    now = timezone.now()
    # These never change after submit, so reading them first cannot race the UPDATE.
    fixed = AsyncJob.objects.filter(pk=job.id).values_list(
        "result_ttl", "provider", "model", "counted"
    )
    ttl, provider, model, counted = fixed.first() or (0, "", "", False)
    with transaction.atomic(using=router.db_for_write(AsyncJob)):
        cancelled = bool(ttl) and AsyncJob.objects.filter(
            pk=job.id, status__in=ACTIVE_STATUSES
        ).update(
            status=JobStatus.CANCELLED,
            completed_at=now,
            expires_at=now + timedelta(seconds=ttl),
            lease_expires_at=None,
        )
        if cancelled:
            enqueue_deliveries([job.id])  # its webhook notice, committed with the state
            if counted:
                limits.count_ended(job.virtual_key_id, now)
    job = get_visible_job(job_id, principal, request_type)
    if not cancelled:
        raise _not_cancellable(job)  # it ended (or was cancelled) between the read and the UPDATE
    metrics.count_finished("cancelled", request_type, provider, model)
    return job


def _not_cancellable(job: PolledJob) -> JobNotCancellable:
    return JobNotCancellable(
        f"The job has already ended ({job.status}); only a pending or processing job can be "
        "cancelled.",
        request_type=job.request_type,
    )


def cancelled_among(job_ids: list[str]) -> list[str]:
    """Which of these jobs (a worker's in flight) have been cancelled."""
    cancelled: list[str] = []
    for start in range(0, len(job_ids), _IDS_PER_QUERY):
        chunk = job_ids[start : start + _IDS_PER_QUERY]
        found = AsyncJob.objects.filter(pk__in=chunk, status=JobStatus.CANCELLED)
        cancelled += [str(pk) for pk in found.values_list("pk", flat=True)]
    return cancelled


_IDS_PER_QUERY = 500  # under SQLite's limit on a statement's parameters


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
    dispatch(released)
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
            "id",
            "attempts",
            "provider",
            "model",
            "request_type",
            "result_ttl",
            "claimed_by",
            "counted",
            "virtual_key_id",
        )[:limit]
    )
    for job in stale:
        if job.attempts >= settings.GATEWAY_JOB_MAX_ATTEMPTS:
            with transaction.atomic(using=router.db_for_write(AsyncJob)):
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
                if failed:
                    enqueue_deliveries([job.pk])
                    if job.counted:
                        limits.count_ended(job.virtual_key_id, now)
            if failed:
                metrics.count_finished("failed", job.request_type, job.provider, job.model)
            counts["failed"] += failed
        elif AsyncJob.objects.filter(
            pk=job.pk, status=JobStatus.PROCESSING, lease_expires_at__lt=now
        ).update(status=JobStatus.PENDING, claimed_by="", lease_expires_at=None, dispatched_at=now):
            counts["requeued"] += 1

    cutoff = now - timedelta(seconds=settings.GATEWAY_REDISPATCH_AFTER)
    waiting = list(
        AsyncJob.objects.filter(status=JobStatus.PENDING, dispatched_at__lt=cutoff).values_list(
            "pk", flat=True
        )[:limit]
    )
    if waiting:
        AsyncJob.objects.filter(pk__in=waiting, status=JobStatus.PENDING).update(dispatched_at=now)
    counts["redispatched"] = len(waiting)
    dispatch(counts["requeued"] + counts["redispatched"])
    if any(counts.values()):
        logger.info("stale jobs: %s", counts)
    return counts


def retry_job(job: AsyncJob) -> bool:
    """Run a failed job again from the start (admin action), keeping the failed try's outcome.

    The try's status, code, error and times are appended to ``tries`` in the same UPDATE that
    resets the job, so the worker's finish (the hot path) never touches the history. A job that
    counts against its key's limits takes a pending slot again.
    """
    now = timezone.now()
    failed = AsyncJob.objects.filter(pk=job.pk, status=JobStatus.FAILED)
    with transaction.atomic(using=router.db_for_write(AsyncJob)):
        current = failed.select_for_update().defer("request", "result").first()
        if current is None:
            return False
        reset = failed.update(
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
            dispatched_at=now,
            tries=[*current.tries, try_outcome(current, retried_at=now)],
        )
        if reset and current.counted:
            limits.count_restarted(current.virtual_key_id)
    if reset:
        transaction.on_commit(lambda: dispatch(1))
    return bool(reset)


def delete_jobs(jobs: QuerySet[AsyncJob]) -> None:
    """Delete jobs (admin); the counted ones still pending or processing free their key's slot
    in the same transaction."""
    with transaction.atomic(using=router.db_for_write(AsyncJob)):
        active = (
            jobs.select_for_update()
            .filter(status__in=ACTIVE_STATUSES, counted=True, virtual_key__isnull=False)
            .values_list("virtual_key_id", flat=True)
        )
        now = timezone.now()
        for key_id, count in sorted(Counter(active).items()):
            limits.count_ended(key_id, now, jobs=count)
        jobs.delete()


def try_outcome(job: AsyncJob, *, retried_at: datetime | None = None) -> dict[str, Any]:
    """One try's outcome as ``AsyncJob.tries`` keeps it (times in ISO 8601)."""

    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment is not None else None

    return {
        "status": job.status,
        "status_code": job.status_code,
        "error": job.error,
        "attempts": job.attempts,
        "started_at": iso(job.started_at),
        "completed_at": iso(job.completed_at),
        "retried_at": iso(retried_at),
    }


# A purge statement slower than this halves the next batch; faster than half of it doubles the
# batch again, up to the configured size. Checkpoints and busy neighbours on a shared database
# can slow a statement several-fold, and the purge must never hold rows or a connection for long.
_PURGE_STATEMENT_TARGET = 0.25


def purge_expired_jobs(*, batch_size: int | None = None, time_budget: float = 50.0) -> int:
    """Delete jobs whose result TTL has passed, in short batches, within a time budget.

    Each batch is one statement, so in autocommit (beat, the command) its own short transaction:
    no lock is held between batches and submits, claims and finishes go on meanwhile. No batch
    starts after ``time_budget`` seconds; whatever is left, and any row another transaction held
    while its batch ran, waits for the next run. Nothing points at a job and no signal listens to
    its deletion, so the ORM's collector is not needed.
    """
    ceiling = batch_size or settings.GATEWAY_PURGE_BATCH_SIZE
    size = ceiling
    deadline = time.monotonic() + time_budget
    boundary: datetime | None = None
    total = 0
    while time.monotonic() < deadline:
        started = time.monotonic()
        deleted, oldest = sql.purge_batch(timezone.now(), boundary, size)
        took = time.monotonic() - started
        total += deleted
        if deleted < size:
            break
        boundary = oldest
        if took > _PURGE_STATEMENT_TARGET:
            size = max(1, size // 2)
        elif took < _PURGE_STATEMENT_TARGET / 2:
            size = min(ceiling, size * 2)
    if total:
        logger.info("purged %d expired jobs", total)
    return total


def purge_expired_idempotency_keys(
    *, batch_size: int | None = None, time_budget: float = 10.0
) -> int:
    """Delete idempotency keys older than their window, oldest first, in batches of at most
    ``batch_size`` (default GATEWAY_PURGE_BATCH_SIZE), within a time budget.

    Each batch is one DELETE through the created_at index (nothing points at a key, so the ORM
    deletes without collecting); the rows are small and written only by idempotent submits.
    """
    size = batch_size or settings.GATEWAY_PURGE_BATCH_SIZE
    cutoff = timezone.now() - IDEMPOTENCY_WINDOW
    deadline = time.monotonic() + time_budget
    total = 0
    while time.monotonic() < deadline:
        oldest = IdempotencyKey.objects.filter(created_at__lte=cutoff).order_by("created_at")
        deleted, _ = IdempotencyKey.objects.filter(pk__in=oldest.values("pk")[:size]).delete()
        total += deleted
        if deleted < size:
            break
    if total:
        logger.info("purged %d expired idempotency keys", total)
    return total
