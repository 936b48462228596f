"""The purge deletes jobs whose result TTL has passed, and nothing else, in short batches."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs import services
from jobs.idempotency import IDEMPOTENCY_WINDOW
from jobs.models import AsyncJob, IdempotencyKey, JobStatus
from jobs.tasks import purge_expired_jobs
from tests.factories import AsyncJobFactory, VirtualKeyFactory

pytestmark = pytest.mark.django_db


def finished(expires_in: float, status: str = JobStatus.COMPLETED) -> AsyncJob:
    now = timezone.now()
    return AsyncJobFactory(
        status=status,
        status_code=200 if status == JobStatus.COMPLETED else 502,
        result={} if status == JobStatus.COMPLETED else None,
        error={"type": "api_error"} if status == JobStatus.FAILED else None,
        completed_at=now,
        expires_at=now + timezone.timedelta(seconds=expires_in),
    )


def remaining() -> set[Any]:
    return set(AsyncJob.objects.values_list("pk", flat=True))


@contextmanager
def statements(on_each: Callable[[int], None] | None = None) -> Iterator[list[Any]]:
    """Record the batch size (the LIMIT, the last parameter) of every statement run inside."""
    sizes: list[Any] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        sizes.append(params[-1])
        if on_each is not None:
            on_each(len(sizes))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield sizes


def test_purge_deletes_expired_jobs_and_keeps_the_rest():
    expired = {finished(-10).pk, finished(-0.5).pk, finished(-3600, JobStatus.FAILED).pk}
    alive = {finished(60).pk, finished(3600, JobStatus.FAILED).pk}
    pending = AsyncJobFactory()
    processing = AsyncJobFactory(status=JobStatus.PROCESSING, claimed_by="worker-a")
    assert services.purge_expired_jobs() == 3
    assert remaining() == alive | {pending.pk, processing.pk}
    assert not remaining() & expired


@pytest.mark.parametrize(
    ("expired", "batch_size", "batches"),
    [(7, 2, 4), (6, 2, 4), (1, 2, 1), (0, 2, 1), (5, 10, 1)],
)
def test_purge_runs_one_statement_per_batch_of_at_most_batch_size(expired, batch_size, batches):
    for _ in range(expired):
        finished(-1)
    alive = finished(60)
    with CaptureQueriesContext(connection) as queries, statements() as sizes:
        assert services.purge_expired_jobs(batch_size=batch_size) == expired
    assert len(queries) == batches
    assert all("DELETE" in query["sql"].upper() for query in queries)
    assert sizes == [batch_size] * batches
    assert remaining() == {alive.pk}


def test_purge_takes_its_batch_size_from_settings(settings):
    settings.GATEWAY_PURGE_BATCH_SIZE = 3
    for _ in range(4):
        finished(-1)
    with statements() as sizes:
        assert services.purge_expired_jobs() == 4
    assert sizes == [3, 3]


def test_purge_deletes_jobs_that_expired_at_the_same_instant_across_batches():
    at = timezone.now() - timezone.timedelta(seconds=5)
    for _ in range(5):
        AsyncJobFactory(status=JobStatus.COMPLETED, result={}, completed_at=at, expires_at=at)
    assert services.purge_expired_jobs(batch_size=2) == 5
    assert remaining() == set()


def test_purge_stops_at_the_time_budget_oldest_first():
    jobs = [finished(-100 + second) for second in range(10)]  # oldest first

    with statements(on_each=lambda _: time.sleep(0.05)) as sizes:
        deleted = services.purge_expired_jobs(batch_size=1, time_budget=0.12)

    # Each statement takes at least 0.05 s, so a 0.12 s budget starts one to three batches.
    assert 1 <= deleted <= 3
    assert len(sizes) == deleted
    assert remaining() == {job.pk for job in jobs[deleted:]}


def test_purge_with_no_time_budget_runs_no_statement():
    job = finished(-1)
    with CaptureQueriesContext(connection) as queries:
        assert services.purge_expired_jobs(time_budget=0) == 0
    assert len(queries) == 0
    assert remaining() == {job.pk}


def test_purge_halves_the_batch_after_a_slow_statement_and_grows_it_back():
    for _ in range(20):
        finished(-1)

    def first_is_slow(number: int) -> None:
        if number == 1:
            time.sleep(services._PURGE_STATEMENT_TARGET * 1.5)

    with statements(on_each=first_is_slow) as sizes:
        assert services.purge_expired_jobs(batch_size=4) == 20
    # 4 (slow) -> 2 -> back to 4; the last batch finds 2 rows and ends the run.
    assert sizes == [4, 2, 4, 4, 4, 4]
    assert remaining() == set()


def idempotency_key(age: timezone.timedelta, key: str = "k") -> IdempotencyKey:
    """A key written ``age`` ago, for a job that is still there."""
    return IdempotencyKey.objects.create(
        virtual_key=VirtualKeyFactory(),
        key=key,
        fingerprint="0" * 64,
        job=AsyncJobFactory(),
        created_at=timezone.now() - age,
    )


def keys_left() -> set[str]:
    return set(IdempotencyKey.objects.values_list("key", flat=True))


def test_key_purge_deletes_keys_past_their_window_and_keeps_younger_ones():
    hour = timezone.timedelta(hours=1)
    idempotency_key(IDEMPOTENCY_WINDOW + hour, "old")
    idempotency_key(IDEMPOTENCY_WINDOW + timezone.timedelta(seconds=1), "just-old")
    idempotency_key(IDEMPOTENCY_WINDOW - hour, "young")
    idempotency_key(timezone.timedelta(0), "new")
    assert services.purge_expired_idempotency_keys() == 2
    assert keys_left() == {"young", "new"}
    assert AsyncJob.objects.count() == 4, "a key's purge never touches jobs"


@pytest.mark.parametrize(("expired", "batch_size", "batches"), [(5, 2, 3), (4, 2, 3), (0, 2, 1)])
def test_key_purge_runs_one_delete_per_batch(expired, batch_size, batches):
    for number in range(expired):
        idempotency_key(IDEMPOTENCY_WINDOW * 2, f"old-{number}")
    idempotency_key(timezone.timedelta(0), "new")
    with CaptureQueriesContext(connection) as queries:
        assert services.purge_expired_idempotency_keys(batch_size=batch_size) == expired
    assert len(queries) == batches
    assert all(query["sql"].upper().startswith("DELETE") for query in queries)
    assert keys_left() == {"new"}


def test_key_purge_with_no_time_budget_runs_no_statement():
    idempotency_key(IDEMPOTENCY_WINDOW * 2)
    with CaptureQueriesContext(connection) as queries:
        assert services.purge_expired_idempotency_keys(time_budget=0) == 0
    assert len(queries) == 0
    assert keys_left() == {"k"}


def test_the_job_purge_keeps_the_key_of_a_purged_job():
    job = finished(-1)
    IdempotencyKey.objects.create(key="k", fingerprint="0" * 64, job=job)
    assert services.purge_expired_jobs() == 1
    assert remaining() == set()
    assert IdempotencyKey.objects.get().job_id == job.pk, "the key outlives its job"


def test_purge_task_calls_the_service():
    finished(-1)
    idempotency_key(IDEMPOTENCY_WINDOW * 2, "old")
    idempotency_key(timezone.timedelta(0), "new")
    assert purge_expired_jobs() == 1
    assert AsyncJob.objects.count() == 2  # the keys' jobs, still pending
    assert keys_left() == {"new"}


def run_command(*args: str) -> str:
    out = StringIO()
    call_command("purge_jobs", *args, stdout=out)
    return out.getvalue().strip()


def test_purge_command_json_reports_rows_batches_and_timings():
    for _ in range(5):
        finished(-1)
    alive = finished(60)
    old_key = idempotency_key(IDEMPOTENCY_WINDOW * 2)
    summary = json.loads(run_command("--json", "--batch-size", "2"))
    assert set(summary) == {
        "rows",
        "seconds",
        "rows_per_s",
        "batches",
        "longest_statement_s",
        "idempotency_keys",
    }
    assert summary["rows"] == 5
    assert summary["idempotency_keys"] == 1
    assert summary["batches"] == 3
    assert 0 < summary["longest_statement_s"] <= summary["seconds"]
    assert summary["rows_per_s"] == pytest.approx(5 / summary["seconds"], rel=0.01)
    assert remaining() == {alive.pk, old_key.job_id}
    assert keys_left() == set()


def test_purge_command_json_with_nothing_to_purge():
    summary = json.loads(run_command("--json"))
    assert summary["rows"] == 0
    assert summary["idempotency_keys"] == 0
    assert summary["batches"] == 1
    assert summary["rows_per_s"] == 0


def test_purge_command_prints_a_summary_for_people():
    finished(-1)
    finished(-2)
    idempotency_key(IDEMPOTENCY_WINDOW * 2)
    line = run_command("--time-budget", "30")
    assert line.startswith("Purged 2 expired jobs in ")
    assert line.endswith(" s. Purged 1 expired idempotency keys.")
    assert "; 1 statement, the longest " in line
    assert AsyncJob.objects.count() == 1  # the key's job, pending
    assert keys_left() == set()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--time-budget", "0"], "--time-budget must be a positive number"),
        (["--time-budget", "nan"], "--time-budget must be a positive number"),
    ],
)
def test_purge_command_rejects_bad_options(args, message):
    job = finished(-1)
    with pytest.raises(CommandError, match=message):
        run_command(*args)
    assert remaining() == {job.pk}
