"""The job table's written-out statements (jobs/sql.py), run on the migrated table.

Each column a statement writes is read back through the model, and each it reads is compared
with the model's attribute, so a field changed under a statement fails here.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from gateway.access.models import KeySpend, VirtualKey
from jobs import sql
from jobs.models import AsyncJob, JobStatus, KeyCounters, RequestType
from tests.factories import AsyncJobFactory, VirtualKeyFactory

pytestmark = pytest.mark.django_db

PENDING, PROCESSING = JobStatus.PENDING.value, JobStatus.PROCESSING.value


def every_field_set() -> AsyncJob:
    """A new job with a value other than the default in every field."""
    now = timezone.now()
    return AsyncJob(
        request_type=RequestType.TEXT_COMPLETION,
        virtual_key=VirtualKeyFactory(),
        status=JobStatus.FAILED,
        provider="openai",
        model="gpt-4o-mini",
        fallbacks=["groq/llama"],
        request={"prompt": ["a", "é\u2028"], "max_tokens": 5, "logit_bias": {"50256": -100}},
        result_ttl=600,
        attempts=2,
        counted=True,
        claimed_by="worker-a",
        lease_expires_at=now + timedelta(seconds=30),
        dispatched_at=now - timedelta(seconds=3),
        started_at=now - timedelta(seconds=2),
        completed_at=now - timedelta(seconds=1),
        expires_at=now + timedelta(hours=1),
        status_code=502,
        result={"partial": True},
        error={"type": "api_error", "code": "upstream_error"},
        tries=[{"status": "failed", "status_code": 429, "retried_at": now.isoformat()}],
        cost_usd=Decimal("0.0000123456"),
        unpriced=True,
    )


def test_the_insert_writes_every_field_as_the_model_reads_it_back():
    job = every_field_set()
    blank = AsyncJob()
    for field in AsyncJob._meta.concrete_fields:
        if not field.primary_key and field.name != "created_at":
            # A field added to the model is set here too, or this test says so.
            assert getattr(job, field.attname) != getattr(blank, field.attname), field.name

    sql.insert_job(job)

    stored = AsyncJob.objects.get(pk=job.pk)
    for field in AsyncJob._meta.concrete_fields:
        assert getattr(stored, field.attname) == getattr(job, field.attname), field.name
    assert not job._state.adding
    assert job._state.db == "default"


NONE_LEFT = (False,) * len(sql._DATABASE_DEFAULTS)
ALL_LEFT = (True,) * len(sql._DATABASE_DEFAULTS)


def test_the_columns_left_to_the_database_get_what_the_model_would_have_written():
    blank = AsyncJob()
    assert {"status", "attempts", "claimed_by", "tries", "result", "cost_usd"} <= set(
        sql._DATABASE_DEFAULTS
    )
    for attname, value in sql._DATABASE_DEFAULTS.items():
        assert getattr(blank, attname) == value, attname


def test_a_new_job_names_only_the_columns_the_database_cannot_fill():
    key = VirtualKeyFactory()
    job = AsyncJob(
        request_type=RequestType.CHAT_COMPLETION,
        virtual_key=key,
        provider="openai",
        model="gpt-4o-mini",
        request={"messages": [{"role": "user", "content": "hi"}]},
        result_ttl=60,
        dispatched_at=timezone.now(),
    )
    with CaptureQueriesContext(connection) as queries:
        sql.insert_job(job)

    [insert] = [q["sql"] for q in queries.captured_queries]
    named = set(QUOTED.findall(insert.split("VALUES")[0]))
    assert named == {
        AsyncJob._meta.db_table,
        *("id", "request_type", "virtual_key_id", "provider", "model", "fallbacks", "request"),
        *("result_ttl", "counted", "dispatched_at", "created_at"),
    }
    stored = AsyncJob.objects.get(pk=job.pk)
    for field in AsyncJob._meta.concrete_fields:
        assert getattr(stored, field.attname) == getattr(job, field.attname), field.name


def test_a_job_holding_another_value_than_the_databases_names_that_column():
    job = AsyncJob(
        request_type=RequestType.TEXT_COMPLETION,
        provider="openai",
        model="m",
        request={"prompt": "x"},
        result_ttl=60,
        tries=[{"status": "failed"}],
    )
    sql.insert_job(job)
    stored = AsyncJob.objects.get(pk=job.pk)
    assert stored.tries == [{"status": "failed"}]
    assert (stored.virtual_key_id, stored.status, stored.attempts) == (None, PENDING, 0)


def test_the_insert_stamps_created_at_as_auto_now_add_does():
    job = every_field_set()
    job.created_at = timezone.now() - timedelta(days=1)
    before = timezone.now()
    sql.insert_job(job)
    assert before <= job.created_at <= timezone.now()
    assert AsyncJob.objects.get(pk=job.pk).created_at == job.created_at


def test_the_insert_prepares_values_of_other_types_as_each_field_does():
    job = AsyncJob(
        id=str(uuid.UUID(int=7)),
        request_type="text_completion",
        provider="openai",
        model="m",
        request={},
        result_ttl="60",
        status_code=True,
    )
    sql.insert_job(job)
    stored = AsyncJob.objects.get(pk=uuid.UUID(int=7))
    assert (stored.result_ttl, stored.status_code, stored.virtual_key_id) == (60, 1, None)
    assert stored.fallbacks == []
    assert stored.status == JobStatus.PENDING


def test_polled_fields_are_model_columns_in_the_models_order():
    columns = [field.attname for field in AsyncJob._meta.concrete_fields]
    assert all(name in columns for name in sql.POLL_FIELDS)
    assert sorted(sql.POLL_FIELDS, key=columns.index) == list(sql.POLL_FIELDS)
    assert "request" not in sql.POLL_FIELDS  # prompts are never read back for a poll


def test_a_poll_reads_what_the_models_attributes_hold():
    now = timezone.now()
    job: Any = AsyncJobFactory(
        status=JobStatus.COMPLETED,
        status_code=200,
        completed_at=now,
        expires_at=now + timedelta(hours=1),
        result={"choices": [{"text": "é\u2028"}], "usage": {"total_tokens": 3}},
        error=None,
    )
    polled = sql.read_polled_job(job.pk)
    stored = AsyncJob.objects.get(pk=job.pk)
    assert isinstance(polled, sql.PolledJob)
    for name in sql.POLL_FIELDS:
        assert getattr(polled, name) == getattr(stored, name), name
        assert type(getattr(polled, name)) is type(getattr(stored, name)), name


def test_a_poll_of_an_unknown_id_reads_nothing():
    assert sql.read_polled_job(AsyncJobFactory.build().pk) is None


def test_a_polls_converters_are_asked_once_per_connection(monkeypatch: pytest.MonkeyPatch):
    job: Any = AsyncJobFactory(result={"a": 1})
    sql.read_polled_job(job.pk)
    asked: list[Any] = []
    real = connection.ops.get_db_converters
    monkeypatch.setattr(connection.ops, "get_db_converters", lambda e: asked.append(e) or real(e))
    polled = sql.read_polled_job(job.pk)
    assert polled is not None and polled.result == {"a": 1}
    assert asked == []


def test_a_claim_takes_the_oldest_pending_jobs_and_writes_what_the_model_reads_back():
    older, newer = AsyncJobFactory(), AsyncJobFactory()
    AsyncJobFactory(status=JobStatus.PROCESSING)
    now = timezone.now()
    lease = now + timedelta(seconds=60)

    ids = sql.claim_pending(limit=1, worker_id="w", now=now, lease=lease)

    assert ids == [older.pk]
    stored = AsyncJob.objects.get(pk=older.pk)
    assert (stored.status, stored.claimed_by, stored.attempts) == (PROCESSING, "w", 1)
    assert (stored.started_at, stored.lease_expires_at) == (now, lease)
    assert AsyncJob.objects.get(pk=newer.pk).status == JobStatus.PENDING


def test_finish_writes_every_terminal_field_for_the_holder_only():
    now = timezone.now()
    held: Any = AsyncJobFactory(status=PROCESSING, claimed_by="w", lease_expires_at=now)
    elsewhere: Any = AsyncJobFactory(status=PROCESSING, claimed_by="x", lease_expires_at=now)
    values = {
        "status": JobStatus.FAILED.value,
        "completed_at": now,
        "expires_at": now + timedelta(seconds=120),
        "status_code": 502,
        "result": None,
        "error": {"type": "api_error", "message": "é\u2028"},
        "cost_usd": Decimal("0.0123456789"),
        "unpriced": True,
    }
    assert set(values) == set(sql.FINISH_FIELDS)

    written = sql.finish(
        [(held.pk, values), (elsewhere.pk, values)], processing=PROCESSING, worker_id="w"
    )

    assert written == [True, False]
    stored = AsyncJob.objects.get(pk=held.pk)
    for name, value in values.items():
        assert getattr(stored, name) == value, name
    assert stored.lease_expires_at is None
    assert AsyncJob.objects.get(pk=elsewhere.pk).status == PROCESSING


def test_a_purge_batch_deletes_expired_jobs_oldest_first_and_names_the_oldest_expiry():
    now = timezone.now()
    expired = [AsyncJobFactory(expires_at=now - timedelta(seconds=age)) for age in (30, 20, 10)]
    alive = AsyncJobFactory(expires_at=now + timedelta(seconds=60))

    deleted, oldest = sql.purge_batch(now, None, 2)

    assert deleted == 2
    assert set(AsyncJob.objects.values_list("pk", flat=True)) == {expired[2].pk, alive.pk}
    if connection.vendor == "postgresql":
        # The next batch starts its index scan here (see sql._purge_sql).
        assert oldest == expired[0].expires_at
        assert sql.purge_batch(now, oldest, 2) == (1, expired[2].expires_at)
    else:
        assert oldest is None


QUOTED = re.compile(r'"([^"]+)"')


def test_the_statements_name_only_the_models_table_and_columns():
    names = {AsyncJob._meta.db_table} | {f.column for f in AsyncJob._meta.concrete_fields}
    statements = [
        sql._insert_sql("default", NONE_LEFT),
        sql._insert_sql("default", ALL_LEFT),
        sql._poll_sql("default"),
        sql._finish_sql(connection),
        sql._purge_sql(connection, from_boundary=False),
        sql._purge_sql(connection, from_boundary=True),
    ]
    for statement in statements:
        quoted = set(QUOTED.findall(statement))
        assert quoted, statement
        assert quoted <= names, statement


def test_the_claim_names_only_the_jobs_columns_and_the_keys_share():
    names = {AsyncJob._meta.db_table} | {f.column for f in AsyncJob._meta.concrete_fields}
    key_columns = {VirtualKey._meta.get_field(name).column for name in ("id", "share")}
    names |= {VirtualKey._meta.db_table} | key_columns

    quoted = set(QUOTED.findall(sql._claim_sql(connection)))

    assert {VirtualKey._meta.db_table, AsyncJob._meta.db_table} <= quoted
    assert quoted <= names


@pytest.mark.parametrize(
    "checks",
    [
        (True, True, True, False, False),
        (True, False, False, False, False),
        (False, False, True, False, False),
        (True, True, True, True, True),
        (False, False, False, True, False),
    ],
)
def test_the_gate_names_only_the_counters_ledger_and_jobs_tables_and_columns(checks):
    names = {AsyncJob._meta.db_table} | {f.column for f in AsyncJob._meta.concrete_fields}
    names |= {KeyCounters._meta.db_table} | {f.column for f in KeyCounters._meta.concrete_fields}
    names |= {KeySpend._meta.db_table} | {f.column for f in KeySpend._meta.concrete_fields}
    statements = [sql._gate_sql("default", checks)]
    statements += [sql._gated_insert_sql("default", checks, left) for left in (NONE_LEFT, ALL_LEFT)]
    for statement in statements:
        quoted = set(QUOTED.findall(statement))
        assert KeyCounters._meta.db_table in quoted, statement
        assert (KeySpend._meta.db_table in quoted) == checks[3], statement
        assert quoted <= names, statement


def gate_of(job: AsyncJob, **limits: Any) -> sql.KeyGate:
    values = {"requests_per_minute": None, "tokens_per_minute": None, "max_pending": None}
    return sql.KeyGate(key_id=job.virtual_key_id, minute=1000, **(values | limits))  # type: ignore[arg-type]


def test_the_gated_insert_writes_every_field_as_the_model_reads_it_back():
    job = every_field_set()
    KeyCounters.objects.create(virtual_key=job.virtual_key)

    assert sql.insert_counted_job(job, gate_of(job, requests_per_minute=5, max_pending=5))

    stored = AsyncJob.objects.get(pk=job.pk)
    for field in AsyncJob._meta.concrete_fields:
        assert getattr(stored, field.attname) == getattr(job, field.attname), field.name
    assert not job._state.adding and job._state.db == "default"
    counters = KeyCounters.objects.get(pk=job.virtual_key_id)
    assert (counters.pending, counters.requests, counters.request_minute) == (1, 1, 1000)


def test_the_gated_insert_writes_nothing_without_a_counters_row():
    job = every_field_set()
    assert not sql.insert_counted_job(job, gate_of(job, max_pending=5))
    assert not AsyncJob.objects.exists()
    assert job._state.adding


def test_the_gate_counts_each_limit_against_its_own_column():
    job = every_field_set()
    key = job.virtual_key
    KeyCounters.objects.create(
        virtual_key=key, pending=2, request_minute=1000, requests=3, token_minute=1000, tokens=50
    )
    refused = [
        gate_of(job, max_pending=2),
        gate_of(job, requests_per_minute=3),
        gate_of(job, tokens_per_minute=50),
    ]
    for gate in refused:
        assert not sql.insert_counted_job(every_field_set_for(key), gate), gate
    admitted = gate_of(job, max_pending=3, requests_per_minute=4, tokens_per_minute=51)
    assert sql.insert_counted_job(every_field_set_for(key), admitted)
    counters = KeyCounters.objects.get(pk=key.pk)
    assert (counters.pending, counters.requests, counters.tokens) == (3, 4, 50)


def test_a_new_minute_restarts_the_request_count_and_ignores_old_tokens():
    job = every_field_set()
    KeyCounters.objects.create(
        virtual_key=job.virtual_key, request_minute=999, requests=3, token_minute=999, tokens=50
    )
    gate = gate_of(job, requests_per_minute=3, tokens_per_minute=50)
    assert sql.insert_counted_job(job, gate)
    counters = KeyCounters.objects.get(pk=job.virtual_key_id)
    assert (counters.requests, counters.request_minute) == (1, 1000)


def test_the_gate_admits_while_the_ledger_from_its_first_day_is_below_the_budget():
    job = every_field_set()
    key = job.virtual_key
    KeyCounters.objects.create(virtual_key=key)
    today = timezone.now().date()
    for day, spent in ((today - timedelta(days=1), "5"), (today, "0.9999999999")):
        KeySpend.objects.create(virtual_key=key, day=day, model="openai/m", spend_usd=spent)
    daily = gate_of(job, budget_usd=Decimal(1), spend_from=today)
    assert sql.insert_counted_job(every_field_set_for(key), daily)

    KeySpend.objects.filter(day=today).update(spend_usd=Decimal(1))
    assert not sql.insert_counted_job(every_field_set_for(key), daily)
    # Every day counts when the gate has no first day (the "total" period).
    total = gate_of(job, budget_usd=Decimal(6), spend_from=None)
    assert not sql.insert_counted_job(every_field_set_for(key), total)
    assert sql.insert_counted_job(every_field_set_for(key), total._replace(budget_usd=Decimal(7)))
    assert AsyncJob.objects.count() == 2
    assert KeyCounters.objects.get(pk=key.pk).pending == 2


def test_the_budget_gate_counts_only_its_own_keys_ledger():
    job = every_field_set()
    KeyCounters.objects.create(virtual_key=job.virtual_key)
    other = VirtualKeyFactory()
    KeySpend.objects.create(
        virtual_key=other, day=timezone.now().date(), model="openai/m", spend_usd=Decimal(50)
    )
    assert sql.insert_counted_job(job, gate_of(job, budget_usd=Decimal(1), spend_from=None))


def every_field_set_for(key: Any) -> AsyncJob:
    job = every_field_set()
    job.virtual_key = key
    return job


def test_the_budget_read_names_only_the_ledgers_table_and_columns():
    names = {KeySpend._meta.db_table} | {f.column for f in KeySpend._meta.concrete_fields}
    for from_day in (False, True):
        statement = sql._spent_sql("default", from_day=from_day)
        assert QUOTED.findall(statement), statement
        assert set(QUOTED.findall(statement)) <= names, statement


def test_the_budget_read_sums_a_keys_spend_from_a_day_exactly():
    key, other = VirtualKeyFactory(), VirtualKeyFactory()
    today = timezone.now().date()
    rows = [
        (key, today, "openai/a", "0.0000000001"),
        (key, today, "openai/b", "1.5"),
        (key, today - timedelta(days=1), "openai/a", "2"),
        (other, today, "openai/a", "40"),
    ]
    for owner, day, model, spend in rows:
        KeySpend.objects.create(virtual_key=owner, day=day, model=model, spend_usd=Decimal(spend))

    assert sql.spent_since(key.pk, today) == Decimal("1.5000000001")
    assert sql.spent_since(key.pk, None) == Decimal("3.5000000001")
    assert sql.spent_since(key.pk, today + timedelta(days=1)) == 0
    assert sql.spent_since(VirtualKeyFactory().pk, None) == 0
    assert isinstance(sql.spent_since(key.pk, today), Decimal)


class RecordingRouter:
    """Sends everything to the default database and records what was asked."""

    asked: list[tuple[str, type]] = []

    def db_for_read(self, model: type, **hints: Any) -> str:
        self.asked.append(("read", model))
        return "default"

    def db_for_write(self, model: type, **hints: Any) -> str:
        self.asked.append(("write", model))
        return "default"


def test_every_statement_asks_the_router_for_its_database(settings: Any):
    settings.DATABASE_ROUTERS = [f"{__name__}.RecordingRouter"]
    job, now = every_field_set(), timezone.now()
    RecordingRouter.asked.clear()

    sql.insert_job(job)
    sql.read_polled_job(job.pk)
    assert RecordingRouter.asked == [("write", AsyncJob), ("read", AsyncJob)]
    RecordingRouter.asked.clear()
    other = every_field_set()
    KeyCounters.objects.create(virtual_key=other.virtual_key)
    RecordingRouter.asked.clear()
    assert sql.insert_counted_job(other, gate_of(other, max_pending=1))
    assert RecordingRouter.asked[0] == ("write", AsyncJob)
    RecordingRouter.asked.clear()
    sql.claim_pending(limit=1, worker_id="w", now=now, lease=now)
    sql.finish([], processing=PROCESSING, worker_id="w")
    sql.purge_batch(now, None, 1)
    assert RecordingRouter.asked == [("write", AsyncJob)] * 3
    RecordingRouter.asked.clear()
    sql.spent_since(job.virtual_key_id or 0, None)
    assert RecordingRouter.asked == [("read", KeySpend)]
