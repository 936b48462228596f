"""Writes to jobs: submit, claim, finish, lease renewal, re-dispatch, retry and purge.

Views, the worker engine, beat tasks and admin actions all go through these functions. Every state
change is a conditional UPDATE on the current state, so duplicate deliveries and late workers
cannot write twice.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.db.models import F, Field
from django.utils import timezone

from gateway.errors import error_body
from gateway.principals import Principal
from jobs.dispatch import dispatch, dispatch_soon
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
    # One INSERT: in autocommit it is committed when it returns, before the client hears 202,
    # and on_commit then rings at once (inside a caller's transaction, after its commit).
    now = timezone.now()
    job = AsyncJob(
        request_type=request_type,
        virtual_key=principal.virtual_key,
        provider=provider,
        model=model,
        fallbacks=fallbacks,
        request=request,
        result_ttl=result_ttl,
        created_at=now,
        dispatched_at=now,
    )
    _insert(job)
    transaction.on_commit(dispatch_soon)
    return job


@functools.cache
def _insert_sql(vendor: str) -> str:
    quote = connection.ops.quote_name
    fields = AsyncJob._meta.concrete_fields
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    return f"INSERT INTO {quote(AsyncJob._meta.db_table)} ({columns}) VALUES ({placeholders})"  # noqa: S608 (names from the model)


def _insert(job: AsyncJob) -> None:
    """Insert a new job with one written-out statement.

    Submits are the most frequent write, and building the ORM's INSERT costs more CPU than
    running it. Every column is sent as the ORM would send it (``_column_adapters``), and the
    instance is marked saved, so it is what ``AsyncJob.objects.create`` returns. AsyncJob has
    no save signals or ``save()`` override to skip.
    """
    values = [
        to_db(getattr(job, attname)) for attname, to_db in _column_adapters(connection.vendor)
    ]
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(connection.vendor), values)
    job._state.adding = False
    job._state.db = connection.alias


@functools.cache
def _column_adapters(vendor: str) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
    """(attname, to_db) for each column of the INSERT, in ``_insert_sql``'s order.

    ``to_db(value)`` is ``field.get_db_prep_save(value, connection)``, which costs half the
    INSERT's CPU, without its generic path for the plain values a submit sends. Which values
    pass through unchanged (or only wrapped, as Postgres wraps integers in sized types) is
    learnt by asking the field itself about a sample of each kind, once per database vendor;
    anything else takes the field's own path.
    """
    return tuple((field.attname, _adapter(field)) for field in AsyncJob._meta.concrete_fields)


_SAMPLES: dict[type, Any] = {
    str: "sample",
    int: 7,
    UUID: UUID(int=7),
    datetime: datetime(2000, 1, 1, tzinfo=UTC),
}


def _adapter(field: Field[Any, Any]) -> Callable[[Any], Any]:
    if isinstance(field, models.JSONField):
        return functools.partial(_json, field.encoder)
    for kind, sample in _SAMPLES.items():
        try:
            probe = field.get_db_prep_save(sample, connection)
        except (TypeError, ValueError, ValidationError):
            continue  # not a kind of value this field takes
        if probe is sample:
            return functools.partial(_plain, kind, None, field)
        if kind is int and isinstance(probe, int) and probe == sample:
            return functools.partial(_plain, kind, type(probe), field)
    return functools.partial(_prep_save, field)


def _prep_save(field: Field[Any, Any], value: Any) -> Any:
    return field.get_db_prep_save(value, connection)


def _plain(
    kind: type, wrap: Callable[[Any], Any] | None, field: Field[Any, Any], value: Any
) -> Any:
    if value is None:
        return None
    if type(value) is kind and (not isinstance(value, datetime) or value.tzinfo is not None):
        return value if wrap is None else wrap(value)
    return field.get_db_prep_save(value, connection)


def _json(encoder: type[json.JSONEncoder] | None, value: Any) -> Any:
    # JSONField.get_db_prep_save: None is SQL NULL, anything else JSON.
    return None if value is None else connection.ops.adapt_json_value(value, encoder)


def _claim_pending_sql() -> str:
    quote = connection.ops.quote_name
    table, job_id, status = quote(AsyncJob._meta.db_table), quote("id"), quote("status")
    assignments = (
        f"{status} = %s, {quote('claimed_by')} = %s, {quote('lease_expires_at')} = %s, "
        f"{quote('started_at')} = %s, {quote('attempts')} = {quote('attempts')} + 1"
    )
    oldest = f"SELECT {job_id} FROM {table} WHERE {status} = %s ORDER BY {quote('created_at')}"  # noqa: S608 (names from the model)
    if connection.features.has_select_for_update_skip_locked:
        # Postgres: rows another engine is claiming right now are skipped, not waited for. The
        # pick is a materialized CTE so it runs once: as an IN (...) subquery the planner may
        # run it again, and each run would skip the rows the last one locked and take more.
        return (
            f"WITH picked AS MATERIALIZED ({oldest} LIMIT %s FOR UPDATE SKIP LOCKED) "  # noqa: S608
            f"UPDATE {table} SET {assignments} FROM picked "
            f"WHERE {table}.{job_id} = picked.{job_id} RETURNING {table}.{job_id}"
        )
    # SQLite has one writer at a time, so the plain statement is already exclusive.
    return (
        f"UPDATE {table} SET {assignments} "  # noqa: S608 (names from the model)
        f"WHERE {job_id} IN ({oldest} LIMIT %s) RETURNING {job_id}"
    )


def claim_pending_jobs(limit: int, worker_id: str) -> list[AsyncJob]:
    """Claim up to ``limit`` pending jobs, oldest first: pending -> processing under a lease."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.GATEWAY_JOB_LEASE_SECONDS)
    assignments: list[Any] = [
        JobStatus.PROCESSING.value,
        worker_id,
        _db_value("lease_expires_at", lease),
        _db_value("started_at", now),
    ]
    pick: list[Any] = [JobStatus.PENDING.value, limit]
    if connection.features.has_select_for_update_skip_locked:
        params = pick + assignments  # the CTE comes first
    else:
        params = assignments + pick
    with connection.cursor() as cursor:
        cursor.execute(_claim_pending_sql(), params)
        ids = [row[0] for row in cursor.fetchall()]
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


_FINISH_COLUMNS = ("status", "completed_at", "expires_at", "status_code", "result", "error")


def _finish_sql() -> str:
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(column)} = %s" for column in _FINISH_COLUMNS)
    return (
        f"UPDATE {quote(AsyncJob._meta.db_table)} SET {assignments}, "  # noqa: S608 (names from the model)
        f"{quote('lease_expires_at')} = NULL "
        f"WHERE {quote('id')} = %s AND {quote('status')} = %s AND {quote('claimed_by')} = %s"
    )


def _db_value(field_name: str, value: Any) -> Any:
    """A value as the ORM would send it for this column (None stays SQL NULL)."""
    if value is None:
        return None
    field = AsyncJob._meta.get_field(field_name)
    assert isinstance(field, Field)
    return field.get_db_prep_save(value, connection)


def finish_jobs(worker_id: str, finishes: list[Finish]) -> list[bool]:
    """Write terminal states, once each: only the worker holding a job may, only while it does.

    One transaction for the batch, one prepared UPDATE per job; the answer says which were
    written (False: the job is no longer this worker's).
    """
    if not finishes:
        return []
    now = timezone.now()
    sql = _finish_sql()
    written: list[bool] = []
    with transaction.atomic(), connection.cursor() as cursor:
        for finish in finishes:
            values = {
                "status": JobStatus.FAILED if finish.error is not None else JobStatus.COMPLETED,
                "completed_at": now,
                "expires_at": now + timedelta(seconds=finish.result_ttl),
                "status_code": finish.status_code,
                "result": finish.result,
                "error": finish.error,
            }
            params = [_db_value(column, values[column]) for column in _FINISH_COLUMNS]
            params += [
                _db_value("id", finish.job_id),
                JobStatus.PROCESSING.value,
                worker_id,
            ]
            cursor.execute(sql, params)
            written.append(cursor.rowcount == 1)
    return written


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
            "id", "attempts", "provider", "model", "request_type", "result_ttl", "claimed_by"
        )[:limit]
    )
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
        transaction.on_commit(lambda: dispatch(1))
    return bool(reset)


# A purge statement slower than this halves the next batch; faster than half of it doubles the
# batch again, up to the configured size. Checkpoints and busy neighbours on a shared database
# can slow a statement several-fold, and the purge must never hold rows or a connection for long.
_PURGE_STATEMENT_TARGET = 0.25


def _purge_batch_sql(*, from_boundary: bool) -> str:
    """One purge batch as one statement. Parameters: cutoff, [boundary], batch size.

    Postgres: lock up to n expired rows, oldest expiry first through the expires_at index,
    skipping rows that a worker or another purger holds (neither side ever waits on the other),
    delete them by physical row address (no primary-key lookups), and answer how many went and
    the oldest expiry among them. The ORDER BY keeps the plan on the index: with a bare LIMIT the
    planner may scan the table, and the last batch of a big purge then reads all of it (0.5-1 s
    at a million rows here). The next batch starts its index scan at the oldest expiry of the one
    before, so it walks over that batch's entries once, not over everything deleted so far:
    deleted rows keep their index entries until vacuum, and that one walk marks them dead for
    every later scan, this purge's next run included.
    SQLite has one writer at a time and drops index entries at once, so the plain statement is
    already exclusive and cheap.
    """
    quote = connection.ops.quote_name
    table = quote(AsyncJob._meta.db_table)
    expires = quote(AsyncJob._meta.get_field("expires_at").column)
    if connection.vendor != "postgresql":
        pk = quote(AsyncJob._meta.get_field("id").column)
        return (
            f"DELETE FROM {table} WHERE {pk} IN (SELECT {pk} FROM {table} "  # noqa: S608 (names from the model)
            f"WHERE {expires} <= %s ORDER BY {expires} LIMIT %s)"
        )
    since = f" AND {expires} >= %s" if from_boundary else ""
    return (
        f"WITH gone AS (DELETE FROM {table} WHERE ctid = ANY(ARRAY("  # noqa: S608 (names from the model)
        f"SELECT ctid FROM {table} WHERE {expires} <= %s{since} "
        f"ORDER BY {expires} LIMIT %s FOR UPDATE SKIP LOCKED)) RETURNING {expires}) "
        f"SELECT count(*), min({expires}) FROM gone"
    )


def _purge_batch(cutoff: datetime, boundary: datetime | None, size: int) -> tuple[int, Any]:
    """Delete up to ``size`` jobs expired by ``cutoff``; (rows deleted, oldest expiry or None)."""
    params: list[Any] = [connection.ops.adapt_datetimefield_value(cutoff)]
    if boundary is not None:
        params.append(boundary)
    params.append(size)
    with connection.cursor() as cursor:
        cursor.execute(_purge_batch_sql(from_boundary=boundary is not None), params)
        if connection.vendor != "postgresql":
            return cursor.rowcount, None
        deleted, oldest = cursor.fetchone()
        return deleted, oldest


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
        deleted, oldest = _purge_batch(timezone.now(), boundary, size)
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
