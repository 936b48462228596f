"""Every statement on the job table that is written out rather than built by the ORM.

Building a query costs the ORM more CPU than running it, and on the paths that run most that
cost was measured and found to matter (docs/measurements.md, "The ORM on the request path"):

- ``insert_job``: the submit's INSERT, instead of ``AsyncJob.objects.create``.
- ``insert_counted_job``: the same INSERT for a key with limits or a budget, only if the key's
  counters row (KeyCounters) and its spend admit it; it updates the row: on Postgres one
  statement and no transaction, then a wait for the log's flush that holds no lock.
- ``read_polled_job``: the poll's SELECT by primary key, instead of ``only(...).get(pk=...)``.
- ``finish``: the engine's batch of terminal states in one transaction, one prepared UPDATE per
  job, instead of ``filter(...).update(...)`` for each.
- ``spent_since``: what a key with a budget has spent (the sum of its ledger rows,
  ``gateway.access.models.KeySpend``), instead of ``aggregate(Sum(...))``; the same sum is part
  of the gate's WHERE for a key with a budget.

Two say what the ORM has no words for:

- ``claim_pending``: pending -> processing, a weighted fair share per key (the oldest jobs of
  the keys with the fewest processing per share), skipping rows another engine is claiming
  (``FOR UPDATE SKIP LOCKED``).
- ``purge_batch``: delete expired rows by physical address, oldest expiry first.

Every table and column name comes from the model's fields (AsyncJob's; KeyCounters' in the
limits' statements, KeySpend's in ``spent_since``, VirtualKey's share in the claim), the values
written are prepared by their fields as the ORM prepares them, the values read pass through the
converters the ORM applies, and each statement runs on the database the router names for
AsyncJob.
tests/jobs/test_sql.py runs each one on the migrated table and fails when a field changes
under it.
"""

from __future__ import annotations

import functools
import uuid
import weakref
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from django.db import connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import NOT_PROVIDED, Field, FloatField, Value

from gateway.access.models import KeySpend, VirtualKey
from jobs.log_flush import FLUSH_SQL, shared_flush
from jobs.models import AsyncJob, JobStatus, KeyCounters


def _field(name: str) -> Field[Any, Any]:
    field = AsyncJob._meta.get_field(name)
    assert isinstance(field, Field)
    return field


def _writer() -> BaseDatabaseWrapper:
    return connections[router.db_for_write(AsyncJob)]


def _names(conn: BaseDatabaseWrapper, *fields: str) -> list[str]:
    """Quoted column names of AsyncJob's ``fields``."""
    return [conn.ops.quote_name(_field(name).column) for name in fields]


def _table(conn: BaseDatabaseWrapper) -> str:
    return conn.ops.quote_name(AsyncJob._meta.db_table)


def _value(conn: BaseDatabaseWrapper, name: str, value: Any) -> Any:
    """A value as the ORM would send it for this field (None stays SQL NULL)."""
    return None if value is None else _field(name).get_db_prep_save(value, conn)


def _converters(conn: BaseDatabaseWrapper, field: Field[Any, Any]) -> list[Any]:
    """What the ORM's compiler applies to this field's values read from ``conn``."""
    col = field.cached_col
    return conn.ops.get_db_converters(col) + col.get_db_converters(conn)


def _read(conn: BaseDatabaseWrapper, name: str, value: Any) -> Any:
    """A value read from the database as the model's attribute would hold it."""
    field = _field(name)
    for convert in _converters(conn, field):
        value = convert(value, field.cached_col, conn)
    return value


# --- the submit's INSERT ------------------------------------------------------------------------


def _default_at_insert(field: Field[Any, Any]) -> tuple[bool, Any]:
    """(True, value) when the database writes ``value`` into the field's column by itself:
    its ``db_default``, or NULL in a nullable column without one; (False, None) otherwise."""
    if field.primary_key or getattr(field, "auto_now_add", False):
        return False, None
    default = field.db_default
    if default is not NOT_PROVIDED:
        if isinstance(default, Value):
            return True, default.value
        return not hasattr(default, "resolve_expression"), default  # a function: not a constant
    if field.null and not field.has_default():
        return True, None
    return False, None


# Columns the database fills by itself, with the value it writes. A new job holds that value in
# most of them (a pending job has no result, no lease, no cost yet), so the INSERT names only
# the others: fewer values to prepare, send and cast.
_DATABASE_DEFAULTS = {
    field.attname: value
    for field in AsyncJob._meta.concrete_fields
    for found, value in [_default_at_insert(field)]
    if found
}


def _left_to_database(job: AsyncJob) -> tuple[bool, ...]:
    """For each column the database can fill (``_DATABASE_DEFAULTS``, in order), whether
    ``job`` holds the value it would write there."""
    return tuple(getattr(job, attname) == value for attname, value in _DATABASE_DEFAULTS.items())


@functools.cache
def _inserted(left: tuple[bool, ...]) -> tuple[Field[Any, Any], ...]:
    """The fields an INSERT names, given ``_left_to_database``'s answer."""
    skipped = {attname for attname, skip in zip(_DATABASE_DEFAULTS, left, strict=True) if skip}
    return tuple(f for f in AsyncJob._meta.concrete_fields if f.attname not in skipped)


@functools.cache
def _insert_sql(alias: str, left: tuple[bool, ...]) -> str:
    conn = connections[alias]
    columns = [conn.ops.quote_name(field.column) for field in _inserted(left)]
    placeholders = ", ".join(["%s"] * len(columns))
    return f"INSERT INTO {_table(conn)} ({', '.join(columns)}) VALUES ({placeholders})"  # noqa: S608 (names from the model)


def _insert_values(job: AsyncJob, left: tuple[bool, ...], conn: BaseDatabaseWrapper) -> list[Any]:
    return [
        field.get_db_prep_save(field.pre_save(job, add=True), conn) for field in _inserted(left)
    ]


def insert_job(job: AsyncJob) -> None:
    """Insert a new job, as ``job.save(force_insert=True)`` would: every field's ``pre_save``
    (``auto_now_add`` included) and ``get_db_prep_save``, on the router's database; the
    instance is then marked saved. Columns whose value the database writes by itself are left
    to it. AsyncJob has no save signals or ``save()`` override to skip.
    """
    alias = router.db_for_write(AsyncJob, instance=job)
    conn = connections[alias]
    left = _left_to_database(job)
    with conn.cursor() as cursor:
        cursor.execute(_insert_sql(alias, left), _insert_values(job, left, conn))
    job._state.adding = False
    job._state.db = alias


# --- the submit's INSERT under the key's limits -------------------------------------------------


class KeyGate(NamedTuple):
    """What a submit with a key that has limits or a budget must pass (jobs/limits.py), at clock
    minute ``minute`` (minutes since the Unix epoch); a limit of None is not checked. With a
    budget, the key's ledger rows from ``spend_from`` on (every row when None) must sum to less
    than ``budget_usd``."""

    key_id: int
    minute: int
    requests_per_minute: int | None
    tokens_per_minute: int | None
    max_pending: int | None
    budget_usd: Decimal | None = None
    spend_from: date | None = None


def _counter_names(conn: BaseDatabaseWrapper, *fields: str) -> list[str]:
    """Quoted column names of KeyCounters' ``fields``."""
    names = []
    for name in fields:
        field = KeyCounters._meta.get_field(name)
        assert isinstance(field, Field)
        names.append(conn.ops.quote_name(field.column))
    return names


@functools.cache
def _gate_sql(alias: str, checks: tuple[bool, bool, bool, bool, bool]) -> str:
    """The counters' conditional UPDATE. ``checks``: requests, tokens, pending, budget, and
    whether the budget counts from a day (``_checks``). Parameters: the minute (twice), the
    key's id, then, for each check made, in this order: max_pending; the minute and
    requests_per_minute; the minute and tokens_per_minute; the key's id, [the first ledger day]
    and the budget.

    Every right-hand side reads the row as it was, so a new minute restarts ``requests`` at 1.
    On Postgres a concurrent submit's UPDATE waits for this one's row lock, then checks the WHERE
    again on the row as committed: the last slot goes to exactly one of them. The budget's sum
    reads the ledger as the statement's snapshot has it: spend is written as jobs finish, so a
    submit admitted just before a finish commits is the same as one admitted just before it.
    """
    requests, tokens, pending, budget, from_day = checks
    conn = connections[alias]
    key, pending_n, request_minute, requests_n, token_minute, tokens_n = _counter_names(
        conn, "virtual_key", "pending", "request_minute", "requests", "token_minute", "tokens"
    )
    where = [f"{key} = %s"]
    if pending:
        where.append(f"{pending_n} < %s")
    if requests:
        where.append(f"({request_minute} <> %s OR {requests_n} < %s)")
    if tokens:
        where.append(f"({token_minute} <> %s OR {tokens_n} < %s)")
    if budget:
        budget_type = _budget_field().cast_db_type(conn)  # type: ignore[attr-defined]
        where.append(f"({_spent_sql(alias, from_day=from_day)}) < CAST(%s AS {budget_type})")
    return (
        f"UPDATE {conn.ops.quote_name(KeyCounters._meta.db_table)} SET "  # noqa: S608 (names from the model)
        f"{pending_n} = {pending_n} + 1, "
        f"{requests_n} = CASE WHEN {request_minute} = %s THEN {requests_n} + 1 ELSE 1 END, "
        f"{request_minute} = %s "
        f"WHERE {' AND '.join(where)}"
    )


def _budget_field() -> Field[Any, Any]:
    field = VirtualKey._meta.get_field("budget_usd")
    assert isinstance(field, Field)
    return field


def _checks(gate: KeyGate) -> tuple[bool, bool, bool, bool, bool]:
    return (
        gate.requests_per_minute is not None,
        gate.tokens_per_minute is not None,
        gate.max_pending is not None,
        gate.budget_usd is not None,
        gate.spend_from is not None,
    )


def _gate_params(gate: KeyGate, conn: BaseDatabaseWrapper) -> list[Any]:
    params: list[Any] = [gate.minute, gate.minute, gate.key_id]
    if gate.max_pending is not None:
        params.append(gate.max_pending)
    if gate.requests_per_minute is not None:
        params += [gate.minute, gate.requests_per_minute]
    if gate.tokens_per_minute is not None:
        params += [gate.minute, gate.tokens_per_minute]
    if gate.budget_usd is not None:
        params += _spent_params(conn, gate.key_id, gate.spend_from)
        params.append(_budget_field().get_db_prep_save(gate.budget_usd, conn))
    return params


@functools.cache
def _gated_insert_sql(
    alias: str, checks: tuple[bool, bool, bool, bool, bool], left: tuple[bool, ...]
) -> str:
    """Postgres: the gate and the INSERT in one statement; the job is inserted only if the gate
    updated the key's row. Each value is cast to its column's type, as a VALUES list would
    infer it.

    The statement's transaction commits without waiting for its log to reach the disk
    (``synchronous_commit`` off for that transaction alone), so the key's row lock is released
    at once: every submit of one key takes that lock in turn, and holding it through each
    commit's disk flush made them one at a time (docs/measurements.md, "One key's submits share
    its counters row"). The submit then waits for the log's flush (``jobs/log_flush.py``)
    before the job is reported accepted."""
    conn = connections[alias]
    fields = _inserted(left)
    columns = ", ".join(conn.ops.quote_name(field.column) for field in fields)
    values = ", ".join(f"CAST(%s AS {field.cast_db_type(conn)})" for field in fields)  # type: ignore[attr-defined]
    gate = _gate_sql(alias, checks)
    return (
        f"WITH gate AS ({gate} RETURNING 1), "  # noqa: S608 (names from the model)
        f"commits AS (SELECT set_config('synchronous_commit', 'off', true)) "
        f"INSERT INTO {_table(conn)} ({columns}) SELECT {values} FROM gate, commits"
    )


def _flush_log(alias: str) -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute(FLUSH_SQL)


def _make_durable(alias: str) -> None:
    """Wait until the write-ahead log is on disk up to here (``jobs/log_flush.py``)."""
    shared_flush(alias).wait(functools.partial(_flush_log, alias))


def insert_counted_job(job: AsyncJob, gate: KeyGate) -> bool:
    """Insert ``job`` as ``insert_job`` does, only if the key's counters and budget admit it
    (and then counted in them); False, and nothing written, when a limit is reached, the budget
    is spent or the key has no counters row yet.

    Postgres: one statement, committed asynchronously (``_gated_insert_sql``), then a wait for
    the log's flush, shared with the process's other submits waiting at the same time
    (``jobs/log_flush.py``): the job is durable when this returns in autocommit, and when the
    caller's transaction has committed inside one. SQLite has one writer at a time: the UPDATE,
    then the INSERT, in one transaction (the caller's, when it has one).
    """
    alias = router.db_for_write(AsyncJob, instance=job)
    conn = connections[alias]
    left = _left_to_database(job)
    values = _insert_values(job, left, conn)
    checks = _checks(gate)
    if conn.vendor == "postgresql":
        with conn.cursor() as cursor:
            statement = _gated_insert_sql(alias, checks, left)
            cursor.execute(statement, _gate_params(gate, conn) + values)
            admitted = cursor.rowcount == 1
            if admitted and not conn.in_atomic_block:
                # Committed already (autocommit): durable once the log is flushed past it.
                shared_flush(alias).wait(functools.partial(cursor.execute, FLUSH_SQL))
            elif admitted:
                # Once the caller's transaction has committed (it shares the statement's
                # asynchronous commit), before any later on_commit callback.
                transaction.on_commit(functools.partial(_make_durable, alias), using=alias)
    else:
        with transaction.atomic(using=alias, savepoint=False), conn.cursor() as cursor:
            cursor.execute(_gate_sql(alias, checks), _gate_params(gate, conn))
            admitted = cursor.rowcount == 1
            if admitted:
                cursor.execute(_insert_sql(alias, left), values)
    if admitted:
        job._state.adding = False
        job._state.db = alias
    return admitted


# --- the poll's SELECT --------------------------------------------------------------------------


class PolledJob(NamedTuple):
    """What a poll answers with, and what decides whether the caller may see the job.

    The request itself (prompts of up to GATEWAY_MAX_BODY_BYTES) is never read back for a
    poll. The fields are AsyncJob's columns of the same names, in the model's order.
    """

    id: uuid.UUID
    request_type: str
    virtual_key_id: int | None
    status: str
    created_at: datetime
    completed_at: datetime | None
    expires_at: datetime | None
    status_code: int | None
    result: Any
    error: Any


POLL_FIELDS = PolledJob._fields


@functools.cache
def _poll_fields() -> list[Field[Any, Any]]:
    """The model's fields behind POLL_FIELDS, in order."""
    by_attname = {field.attname: field for field in AsyncJob._meta.concrete_fields}
    return [by_attname[name] for name in POLL_FIELDS]


@functools.cache
def _poll_sql(alias: str) -> str:
    conn = connections[alias]
    columns = ", ".join(conn.ops.quote_name(field.column) for field in _poll_fields())
    (pk,) = _names(conn, "id")
    return f"SELECT {columns} FROM {_table(conn)} WHERE {pk} = %s"  # noqa: S608 (names from the model)


_poll_converters_of: weakref.WeakKeyDictionary[
    BaseDatabaseWrapper, list[tuple[int, Any, list[Any]]]
] = weakref.WeakKeyDictionary()


def _poll_converters(conn: BaseDatabaseWrapper) -> list[tuple[int, Any, list[Any]]]:
    """(index, column, converters) of the POLL_FIELDS that have converters on ``conn``.

    The ORM's compiler asks every column for its converters on every query (JSON, and dates
    and UUIDs on SQLite); a connection's answers do not change, so they are asked once.
    """
    found = _poll_converters_of.get(conn)
    if found is None:
        found = []
        for index, field in enumerate(_poll_fields()):
            converters = _converters(conn, field)
            if converters:
                found.append((index, field.cached_col, converters))
        _poll_converters_of[conn] = found
    return found


def read_polled_job(pk: uuid.UUID) -> PolledJob | None:
    """The job's POLL_FIELDS, each holding what the model's attribute would; None if absent."""
    alias = router.db_for_read(AsyncJob)
    conn = connections[alias]
    with conn.cursor() as cursor:
        cursor.execute(_poll_sql(alias), [_field("id").get_db_prep_value(pk, conn)])
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row)
    for index, col, converters in _poll_converters(conn):
        for convert in converters:
            values[index] = convert(values[index], col, conn)
    return PolledJob(*values)


# --- the engines' claim -------------------------------------------------------------------------

# Jobs without a virtual key (an admin JWT's) are one group, numbered 0: key ids start at 1.
NO_KEY_GROUP = 0
# Jobs processing counted per key, at most: keys with more are equally busy to the claim, which
# then gives them turns by their shares, instead of reading every row they have in flight.
BUSY_COUNTED = 1000
# Candidates read per key: twice the claim's limit, so an engine claiming beside another, which
# skips the rows the other is locking, still finds as many as it has room for.
CANDIDATES_PER_LIMIT = 2


def _key_field(name: str) -> Field[Any, Any]:
    field = VirtualKey._meta.get_field(name)
    assert isinstance(field, Field)
    return field


def _literal(value: str) -> str:
    """A status value written into the statement: the partial indexes' predicates name it, and
    a planner only uses a partial index whose predicate it can prove from the query's text."""
    assert value.isidentifier(), value
    return f"'{value}'"


def _claim_sql(conn: BaseDatabaseWrapper) -> str:
    """The claim, a weighted fair share per key. Parameters, in order: candidates per key, the
    limit and the assignments on Postgres; candidates per key, the assignments and the limit on
    SQLite.

    Jobs are grouped by key (``job_pending_group_idx`` and ``job_processing_group_idx``, on
    ``COALESCE(virtual_key_id, 0)``). ``queued`` finds the keys with pending jobs by a loose
    index scan: one index probe per key, however many jobs each has queued. ``load`` counts
    each key's jobs processing (up to ``BUSY_COUNTED``) through the partial index of processing
    jobs and reads its ``share`` (``VirtualKey.share``; 1 for jobs without a key) by the key
    table's primary key; with one key pending there is nothing to share and it reads neither.
    ``ranked`` takes each key's oldest pending jobs (a few index entries per key) and gives each
    the key's jobs processing before it is claimed, divided by the key's share; the claim takes
    the lowest such places first, the oldest job among equals. So the key with the fewest jobs
    processing per share is served first: a key with share 3 takes three jobs for every one of
    a key with share 1 while both have a backlog, a key with nothing processing takes the next
    free slot whatever the others' shares, and a key with thousands queued and in flight never
    delays another key's new job by more than that. When every share is 1 the order is the
    unweighted fair share, and when every key is equal it is the old order: oldest first.
    The place is a float: a quotient of two integers is rounded once, so equal fractions (2/6
    and 1/3) are equal places and fall back to the oldest first.

    Each key pending costs one index probe to find it, its count (bounded by ``BUSY_COUNTED``:
    shares hold while each key has fewer jobs than that processing), one look-up of its share by
    the key table's primary key (or, for a key table of a few pages, a read of those pages,
    which the planner prices lower), and its candidates' index entries; nothing reads a key's
    queue past its candidates (docs/measurements.md, "The fair claim" and "Weighted shares").

    Postgres: each candidate, in that order, is locked with ``FOR UPDATE SKIP LOCKED`` until the
    limit is reached, so engines claiming at once never wait for each other nor take a row
    twice (a row another engine claimed meanwhile fails the recheck of ``status``). The
    candidates are locked one by one in a LATERAL join rather than in a join with the job
    table, which the planner would run as a hash join over every pending row. The pick is a
    materialized CTE so it runs once.
    SQLite has one writer at a time, so the plain statement is already exclusive; it has no
    LATERAL, so each key's candidates are the ids IN its own ordered subquery.
    """
    table = _table(conn)
    columns = ("id", "status", "claimed_by", "lease_expires_at", "started_at", "attempts")
    job_id, status, claimed_by, lease, started, attempts = _names(conn, *columns)
    created, key = _names(conn, "created_at", "virtual_key")
    keys = conn.ops.quote_name(VirtualKey._meta.db_table)
    key_id, share = (conn.ops.quote_name(_key_field(name).column) for name in ("id", "share"))
    real = FloatField().db_type(conn)
    pending = f"{status} = {_literal(JobStatus.PENDING.value)}"
    processing = f"{status} = {_literal(JobStatus.PROCESSING.value)}"
    group = f"COALESCE({key}, {NO_KEY_GROUP})"
    assignments = (
        f"{status} = %s, {claimed_by} = %s, {lease} = %s, {started} = %s, "
        f"{attempts} = {attempts} + 1"
    )
    first = f"SELECT {group} FROM {table} WHERE {pending}"  # noqa: S608 (names from the model)
    oldest = (
        f"SELECT {job_id}, {created} FROM {table} "  # noqa: S608 (names from the model)
        f"WHERE {pending} AND {group} = load.grp ORDER BY {created} LIMIT %s"
    )
    postgres = conn.features.has_select_for_update_skip_locked
    if postgres:
        candidates = f"load CROSS JOIN LATERAL ({oldest}) AS c"
    else:
        candidates = f"load JOIN {table} AS c ON c.{job_id} IN (SELECT {job_id} FROM ({oldest}))"  # noqa: S608
    several = "count(*) OVER () > 1"
    shared = (
        f"WITH RECURSIVE queued(grp) AS ("  # noqa: S608 (names from the model)
        f"SELECT ({first} ORDER BY {group} LIMIT 1) "
        f"UNION ALL SELECT ({first} AND {group} > queued.grp ORDER BY {group} LIMIT 1) "
        f"FROM queued WHERE queued.grp IS NOT NULL), "
        f"load AS {'MATERIALIZED ' if postgres else ''}("
        f"SELECT grp, CASE WHEN {several} THEN "
        f"(SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {processing} "
        f"AND {group} = queued.grp LIMIT {BUSY_COUNTED}) AS busy) "
        f"ELSE 0 END AS busy, CASE WHEN {several} THEN "
        f"COALESCE((SELECT {share} FROM {keys} WHERE {key_id} = queued.grp), 1) "
        f"ELSE 1 END AS weight FROM queued WHERE grp IS NOT NULL), "
        f"ranked AS (SELECT c.{job_id} AS id, c.{created} AS created, "
        f"CAST(load.busy + row_number() OVER (PARTITION BY load.grp ORDER BY c.{created}) - 1 "
        f"AS {real}) / load.weight AS place "
        f"FROM {candidates})"
    )
    if postgres:
        return (
            f"{shared}, picked AS MATERIALIZED (SELECT locked.{job_id} FROM "  # noqa: S608
            f"(SELECT id FROM ranked ORDER BY place, created) AS r CROSS JOIN LATERAL "
            f"(SELECT {job_id} FROM {table} WHERE {job_id} = r.id AND {pending} "
            f"FOR UPDATE SKIP LOCKED) AS locked LIMIT %s) "
            f"UPDATE {table} SET {assignments} FROM picked "
            f"WHERE {table}.{job_id} = picked.{job_id} RETURNING {table}.{job_id}"
        )
    return (
        f"{shared} UPDATE {table} SET {assignments} "  # noqa: S608 (names from the model)
        f"WHERE {job_id} IN (SELECT id FROM ranked ORDER BY place, created LIMIT %s) "
        f"RETURNING {job_id}"
    )


def claim_pending(*, limit: int, worker_id: str, now: datetime, lease: datetime) -> list[Any]:
    """Ids of up to ``limit`` jobs moved from pending to processing, each claimed by
    ``worker_id`` under a lease until ``lease``; ``attempts`` counts the claim. Which jobs: the
    oldest of the keys with the fewest jobs processing per share (``_claim_sql``)."""
    conn = _writer()
    assignments = [
        JobStatus.PROCESSING.value,
        worker_id,
        _value(conn, "lease_expires_at", lease),
        _value(conn, "started_at", now),
    ]
    candidates = limit * CANDIDATES_PER_LIMIT
    if conn.features.has_select_for_update_skip_locked:
        params = [candidates, limit, *assignments]
    else:
        params = [candidates, *assignments, limit]
    with conn.cursor() as cursor:
        cursor.execute(_claim_sql(conn), params)
        return [_read(conn, "id", row[0]) for row in cursor.fetchall()]


# --- the engines' terminal writes ---------------------------------------------------------------

FINISH_FIELDS = (
    "status",
    "completed_at",
    "expires_at",
    "status_code",
    "result",
    "error",
    "cost_usd",
    "unpriced",
)


def _finish_sql(conn: BaseDatabaseWrapper) -> str:
    assignments = ", ".join(f"{column} = %s" for column in _names(conn, *FINISH_FIELDS))
    job_id, status, claimed_by, lease = _names(
        conn, "id", "status", "claimed_by", "lease_expires_at"
    )
    return (
        f"UPDATE {_table(conn)} SET {assignments}, {lease} = NULL "  # noqa: S608 (names from the model)
        f"WHERE {job_id} = %s AND {status} = %s AND {claimed_by} = %s"
    )


def finish(
    rows: Sequence[tuple[Any, dict[str, Any]]], *, processing: str, worker_id: str
) -> list[bool]:
    """Write each (job id, FINISH_FIELDS values) in one transaction, where the job is still
    ``processing`` under ``worker_id``; the answer says which rows were written."""
    conn = _writer()
    sql = _finish_sql(conn)
    written: list[bool] = []
    # No savepoint when the caller's transaction holds this one (services.finish_jobs).
    with transaction.atomic(using=conn.alias, savepoint=False), conn.cursor() as cursor:
        for job_id, values in rows:
            params = [_value(conn, name, values[name]) for name in FINISH_FIELDS]
            params += [_value(conn, "id", job_id), processing, worker_id]
            cursor.execute(sql, params)
            written.append(cursor.rowcount == 1)
    return written


# --- the budget read at submit ------------------------------------------------------------------


@functools.cache
def _spent_sql(alias: str, *, from_day: bool) -> str:
    conn = connections[alias]
    quote = conn.ops.quote_name
    columns = {field.name: field.column for field in KeySpend._meta.concrete_fields}
    spend, key, day = (quote(columns[name]) for name in ("spend_usd", "virtual_key", "day"))
    since = f" AND {day} >= %s" if from_day else ""
    return (
        f"SELECT COALESCE(SUM({spend}), 0) FROM {quote(KeySpend._meta.db_table)} "  # noqa: S608 (names from the model)
        f"WHERE {key} = %s{since}"
    )


def _spent_params(conn: BaseDatabaseWrapper, key_id: int, first_day: date | None) -> list[Any]:
    params: list[Any] = [key_id]
    if first_day is not None:
        params.append(KeySpend._meta.get_field("day").get_db_prep_value(first_day, conn))
    return params


def spent_since(key_id: int, first_day: date | None) -> Decimal:
    """What the key spent on the ledger days from ``first_day`` on (every day when None): one
    aggregate over the ledger's (key, day, model) index, read as the model reads spend_usd."""
    alias = router.db_for_read(KeySpend)
    conn = connections[alias]
    with conn.cursor() as cursor:
        sql = _spent_sql(alias, from_day=first_day is not None)
        cursor.execute(sql, _spent_params(conn, key_id, first_day))
        (value,) = cursor.fetchone()
    field = KeySpend._meta.get_field("spend_usd")
    assert isinstance(field, Field)
    for convert in _converters(conn, field):
        value = convert(value, field.cached_col, conn)
    return Decimal(value)


# --- the purge ----------------------------------------------------------------------------------


def _purge_sql(conn: BaseDatabaseWrapper, *, from_boundary: bool) -> str:
    """One purge batch as one statement. Parameters: cutoff, [boundary], batch size.

    Postgres: lock up to n expired rows, oldest expiry first through the expires_at index,
    skipping rows that a worker or another purger holds (neither side ever waits on the other),
    delete them by physical row address (no primary-key lookups), and answer how many went and
    the oldest expiry among them. The ORDER BY keeps the plan on the index: with a bare LIMIT the
    planner may scan the table, and the last batch of a big purge then reads all of it. The next
    batch starts its index scan at the oldest expiry of the one before, so it walks over that
    batch's entries once, not over everything deleted so far: deleted rows keep their index
    entries until vacuum, and that one walk marks them dead for every later scan, this purge's
    next run included.
    SQLite has one writer at a time and drops index entries at once, so the plain statement is
    already exclusive and cheap.
    """
    table = _table(conn)
    pk, expires = _names(conn, "id", "expires_at")
    if conn.vendor != "postgresql":
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


def purge_batch(cutoff: datetime, boundary: datetime | None, size: int) -> tuple[int, Any]:
    """Delete up to ``size`` jobs expired by ``cutoff`` (and not before ``boundary``, the oldest
    expiry the last batch deleted); (rows deleted, oldest expiry among them, or None)."""
    conn = _writer()
    params: list[Any] = [_value(conn, "expires_at", cutoff)]
    if boundary is not None:
        params.append(_value(conn, "expires_at", boundary))
    params.append(size)
    with conn.cursor() as cursor:
        cursor.execute(_purge_sql(conn, from_boundary=boundary is not None), params)
        if conn.vendor != "postgresql":
            return cursor.rowcount, None
        deleted, oldest = cursor.fetchone()
        return deleted, _read(conn, "expires_at", oldest)
