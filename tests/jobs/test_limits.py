"""A key's limits at submit (jobs/limits.py): requests and tokens per minute, jobs pending.

Submits go through the API (the test client); the clock is the one services.submit_job and the
finish read, set per test.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from gateway.access.tokens import ROLE_ADMIN, ROLE_VIRTUAL_KEY, issue_token
from gateway.http.errors import TooManyRequests
from jobs import limits, services
from jobs.log_flush import FLUSH_SQL
from jobs.models import AsyncJob, IdempotencyKey, JobStatus, KeyCounters
from jobs.webhooks.models import WebhookDelivery
from jobs.webhooks.services import create_endpoint
from tests.factories import VirtualKeyFactory
from tests.helpers import assert_error_shape, in_threads, submit_directly

pytestmark = pytest.mark.django_db

URL = "/v1/async/completions"
BODY = {"model": "openai/gpt-4o-mini", "prompt": "Say hi"}
START = datetime(2026, 3, 1, 12, 0, 15, tzinfo=UTC)  # 45 s before the next minute


class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, now: datetime = START) -> None:
        self.now = now
        monkeypatch.setattr(timezone, "now", lambda: self.now)

    def set(self, now: datetime) -> None:
        self.now = now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


def client_for(key: Any) -> Any:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key.raw}")
    return api


def submit(key: Any, **headers: str) -> Any:
    return client_for(key).post(URL, BODY, format="json", **headers)


def assert_refused(response: Any, code: str, retry_after: int) -> dict[str, Any]:
    body = assert_error_shape(response, 429, code=code)
    assert body["type"] == "rate_limit_error"
    assert response["Retry-After"] == str(retry_after)
    return body


def counters(key: Any) -> KeyCounters:
    return KeyCounters.objects.get(pk=key.pk)


def finish(usage: dict[str, int] | None = None) -> Any:
    """Claim a pending job and finish it as a worker does; its id.

    The clock stands still here, so the key's jobs share one ``created_at`` and which of them a
    claim takes first is not defined: the tests name the job claimed, not the one expected.
    """
    [claimed] = services.claim_pending_jobs(1, "w")
    result = {"object": "text_completion", "choices": []}
    if usage is not None:
        result["usage"] = usage  # type: ignore[assignment]
    assert services.finish_jobs("w", [services.Finish(claimed.pk, 60, 200, result=result)]) == [
        True
    ]
    return claimed.pk


# --- requests per minute ------------------------------------------------------------------------


def test_submits_over_the_request_rate_are_429_until_the_next_minute(clock, dispatched):
    key = VirtualKeyFactory(requests_per_minute=2)
    assert submit(key).status_code == 202
    clock.set(START + timedelta(seconds=30))
    assert submit(key).status_code == 202

    body = assert_refused(submit(key), "rate_limit_exceeded", retry_after=15)
    assert "2 requests per minute" in body["error"]["message"]
    clock.set(START + timedelta(seconds=44, microseconds=999_999))
    assert_refused(submit(key), "rate_limit_exceeded", retry_after=1)
    assert AsyncJob.objects.count() == 2

    clock.set(START + timedelta(seconds=45))  # 12:01:00, a new minute
    assert submit(key).status_code == 202
    assert (counters(key).requests, counters(key).pending) == (1, 3)


def test_refused_submits_do_not_count_toward_the_minute(clock, dispatched):
    key = VirtualKeyFactory(requests_per_minute=1)
    assert submit(key).status_code == 202
    for _ in range(3):
        assert submit(key).status_code == 429
    assert counters(key).requests == 1


def test_another_keys_rate_is_its_own(clock, dispatched):
    limited, other = VirtualKeyFactory(requests_per_minute=1), VirtualKeyFactory()
    assert submit(limited).status_code == 202
    assert submit(limited).status_code == 429
    assert [submit(other).status_code for _ in range(3)] == [202] * 3


def test_a_refused_submit_creates_no_job_idempotency_key_or_webhook_delivery(
    clock, dispatched, django_capture_on_commit_callbacks
):
    key = VirtualKeyFactory(requests_per_minute=1)
    create_endpoint(name="hook", url="https://hooks.example.com/in", virtual_key=key)
    headers = {"HTTP_X_BF_ASYNC_WEBHOOK": "hook"}
    with django_capture_on_commit_callbacks(execute=True):
        assert submit(key, HTTP_IDEMPOTENCY_KEY="first", **headers).status_code == 202
    jobs = AsyncJob.objects.count()

    with django_capture_on_commit_callbacks(execute=True):
        refused = submit(key, HTTP_IDEMPOTENCY_KEY="second", **headers)

    assert_refused(refused, "rate_limit_exceeded", retry_after=45)
    assert AsyncJob.objects.count() == jobs == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["first"]
    assert WebhookDelivery.objects.count() == 1
    assert dispatched.rung == 1  # the refused submit rang no bell
    # The same idempotency key is free to succeed once the minute passes.
    clock.set(START + timedelta(minutes=1))
    assert submit(key, HTTP_IDEMPOTENCY_KEY="second", **headers).status_code == 202
    assert WebhookDelivery.objects.count() == 2


# --- tokens per minute --------------------------------------------------------------------------


def test_submits_are_429_while_this_minutes_finished_jobs_used_the_token_limit(clock, dispatched):
    key = VirtualKeyFactory(tokens_per_minute=100)
    submit(key)
    submit(key)
    finish({"prompt_tokens": 30, "completion_tokens": 40, "total_tokens": 70})
    assert counters(key).tokens == 70
    assert submit(key).status_code == 202  # 70 < 100

    finish({"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30})
    assert counters(key).tokens == 100
    body = assert_refused(submit(key), "token_rate_limit_exceeded", retry_after=45)
    assert "100 tokens" in body["error"]["message"]

    clock.set(START + timedelta(seconds=45))
    assert submit(key).status_code == 202


def test_tokens_count_in_the_minute_the_job_finished(clock, dispatched):
    key = VirtualKeyFactory(tokens_per_minute=50)
    job = submit(key).json()["id"]
    clock.set(START + timedelta(minutes=1))
    assert finish({"prompt_tokens": 40, "completion_tokens": 20}) == UUID(job)
    assert (counters(key).token_minute, counters(key).tokens) == (limits.minute_of(clock.now), 60)
    assert submit(key).status_code == 429
    clock.set(START + timedelta(minutes=2))
    assert submit(key).status_code == 202


def test_a_finish_the_worker_no_longer_holds_counts_nothing(clock, dispatched):
    key = VirtualKeyFactory(tokens_per_minute=50, max_pending=5)
    job = submit(key).json()["id"]
    services.claim_pending_jobs(1, "w")
    late = services.Finish(job, 60, 200, result={"usage": {"prompt_tokens": 99}})
    assert services.finish_jobs("someone-else", [late]) == [False]
    assert (counters(key).tokens, counters(key).pending) == (0, 1)


# --- jobs pending -------------------------------------------------------------------------------


def test_at_max_pending_submits_are_429_until_a_job_ends(clock, dispatched):
    key = VirtualKeyFactory(max_pending=2)
    submit(key)
    submit(key)
    body = assert_refused(submit(key), "too_many_pending_jobs", retry_after=1)
    assert "2 jobs pending or processing" in body["error"]["message"]

    [claimed] = services.claim_pending_jobs(1, "w")  # processing still counts
    assert submit(key).status_code == 429
    finish_claimed(claimed.pk)
    assert counters(key).pending == 1
    assert submit(key).status_code == 202
    assert submit(key).status_code == 429


def finish_claimed(job_id: Any) -> None:
    done = services.Finish(job_id, 60, 200, result={"choices": []})
    assert services.finish_jobs("w", [done]) == [True]


def test_a_cancel_frees_the_slot_once(clock, dispatched):
    key = VirtualKeyFactory(max_pending=1)
    job = submit(key).json()["id"]
    assert submit(key).status_code == 429
    api = client_for(key)
    assert api.post(f"{URL}/{job}/cancel").status_code == 200
    assert api.post(f"{URL}/{job}/cancel").status_code == 409
    assert counters(key).pending == 0
    assert submit(key).status_code == 202


def test_a_stale_jobs_failure_frees_its_slot_and_a_requeue_does_not(clock, dispatched, settings):
    key = VirtualKeyFactory(max_pending=1)
    job = submit(key).json()["id"]
    settings.GATEWAY_JOB_MAX_ATTEMPTS = 2
    for expected in (JobStatus.PENDING, JobStatus.FAILED):
        services.claim_pending_jobs(1, "w")
        AsyncJob.objects.filter(pk=job).update(lease_expires_at=clock.now - timedelta(seconds=1))
        services.redispatch_stale_jobs()
        assert AsyncJob.objects.get(pk=job).status == expected
        assert counters(key).pending == (1 if expected == JobStatus.PENDING else 0)
    assert submit(key).status_code == 202


def test_an_admin_retry_takes_the_slot_again(clock, dispatched):
    key = VirtualKeyFactory(max_pending=1)
    job = submit(key).json()["id"]
    services.claim_pending_jobs(1, "w")
    services.finish_jobs("w", [services.Finish(job, 60, 502, error={"code": "x"})])
    assert counters(key).pending == 0
    assert services.retry_job(AsyncJob.objects.get(pk=job))
    assert counters(key).pending == 1
    assert submit(key).status_code == 429


def test_deleting_active_jobs_frees_their_slots_and_ended_ones_do_not(clock, dispatched):
    key = VirtualKeyFactory(max_pending=3)
    ids = [UUID(submit(key).json()["id"]) for _ in range(3)]
    [claimed] = services.claim_pending_jobs(1, "w")
    finish_claimed(claimed.pk)
    assert counters(key).pending == 2
    still_pending = next(pk for pk in ids if pk != claimed.pk)
    services.delete_jobs(AsyncJob.objects.filter(pk__in=[claimed.pk, still_pending]))
    assert counters(key).pending == 1
    assert AsyncJob.objects.count() == 1


def test_jobs_of_a_key_without_limits_are_not_counted(clock, dispatched):
    key = VirtualKeyFactory()
    job = submit(key).json()["id"]
    assert not AsyncJob.objects.get(pk=job).counted
    assert not KeyCounters.objects.exists()
    key.max_pending = 1
    key.save()
    # The job from before the limit holds no slot, now or when it ends.
    assert submit(key).status_code == 202
    client_for(key).post(f"{URL}/{job}/cancel")
    assert counters(key).pending == 1


def test_a_keys_jwt_is_limited_with_the_key_and_an_admin_jwt_is_not(dispatched):
    key = VirtualKeyFactory(requests_per_minute=1)
    as_key, as_admin = APIClient(), APIClient()
    as_key.credentials(
        HTTP_AUTHORIZATION=f"Bearer {issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk)}"
    )
    as_admin.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token(role=ROLE_ADMIN)}")
    statuses = [as_key.post(URL, BODY, format="json").status_code for _ in range(2)]
    if statuses == [202, 202]:  # the minute turned between the two: the next one is refused
        statuses = [as_key.post(URL, BODY, format="json").status_code]
    assert statuses[-1] == 429
    assert submit(key).status_code == 429
    assert [as_admin.post(URL, BODY, format="json").status_code for _ in range(3)] == [202] * 3


# --- cost ---------------------------------------------------------------------------------------


@pytest.fixture
def provider_cache(settings: Any) -> None:
    settings.GATEWAY_PROVIDER_CACHE_SECONDS = 60  # as in production: the table is not read


def test_a_key_without_limits_submits_with_one_statement(dispatched, provider_cache):
    key = VirtualKeyFactory()
    submit(key)  # caches the key
    with CaptureQueriesContext(connection) as queries:
        assert submit(key).status_code == 202
    assert len(queries) == 1, [q["sql"] for q in queries]


def counted_submit_statements(key: Any) -> list[str]:
    """The statements of one submit of ``key`` in autocommit, as the web server runs it."""
    submit(key)  # caches the key and makes its counters row
    with CaptureQueriesContext(connection) as queries:
        assert submit(key).status_code == 202
    return [query["sql"] for query in queries.captured_queries]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "fields",
    [
        {"requests_per_minute": 100, "tokens_per_minute": 10**6, "max_pending": 100},
        # The budget's sum is in the gate's WHERE: no statement of its own.
        {"requests_per_minute": 100, "max_pending": 100, "budget_usd": 10**6},
    ],
    ids=["limits", "limits-and-budget"],
)
def test_a_counted_key_submits_with_one_statement_and_a_flush_on_postgres(
    dispatched, provider_cache, fields
):
    statements = counted_submit_statements(VirtualKeyFactory(budget_period="monthly", **fields))
    if connection.vendor == "postgresql":
        # The gated INSERT, committed without waiting for the disk, then the wait for it.
        assert len(statements) == 2, statements
        assert "synchronous_commit" in statements[0] and statements[1] == FLUSH_SQL
    else:  # the gate's UPDATE, then the INSERT, in one transaction
        assert [s.split()[0] for s in statements] == ["BEGIN", "UPDATE", "INSERT", "COMMIT"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("in_transaction", [False, True], ids=["autocommit", "transaction"])
def test_a_counted_submit_is_on_disk_when_the_client_is_told(dispatched, in_transaction):
    """The gated INSERT's commit does not wait for the disk; the submit does, before it
    returns (inside a caller's transaction: when it has committed)."""
    key = VirtualKeyFactory(max_pending=10)
    KeyCounters.objects.create(virtual_key=key)
    written_up_to: list[str] = []

    def note_log_end(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if connection.vendor == "postgresql" and "synchronous_commit" in sql:
            (end,) = connection.connection.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
            written_up_to.append(str(end))
        return result

    with connection.execute_wrapper(note_log_end):
        if in_transaction:
            with transaction.atomic():
                job = submit_directly(key)
        else:
            job = submit_directly(key)
    if connection.vendor == "postgresql":
        assert len(written_up_to) == 1
        (on_disk,) = connection.connection.execute(
            "SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", written_up_to
        ).fetchone()
        assert on_disk, written_up_to
    else:  # SQLite commits the UPDATE and the INSERT together, synchronously
        assert not written_up_to
    assert AsyncJob.objects.filter(pk=job.pk, counted=True).exists()
    assert counters(key).pending == 1


@pytest.mark.django_db(transaction=True)
def test_a_counted_submit_under_the_asynchronous_commit_still_stops_at_the_limit(dispatched):
    key = VirtualKeyFactory(max_pending=2, requests_per_minute=100)
    assert [submit(key).status_code for _ in range(3)] == [202, 202, 429]
    assert AsyncJob.objects.filter(virtual_key=key).count() == 2
    assert counters(key).pending == 2


def test_a_keys_first_submit_under_limits_makes_its_counters_row(dispatched):
    key = VirtualKeyFactory(max_pending=1)
    assert not KeyCounters.objects.exists()
    assert submit(key).status_code == 202
    assert counters(key).pending == 1


def test_a_refusal_that_finds_room_again_tries_again(clock, dispatched, monkeypatch):
    key = VirtualKeyFactory(max_pending=1)
    assert submit(key).status_code == 202
    real = limits.refusal

    def cancel_then_explain(gate: Any, now: Any) -> TooManyRequests | None:
        KeyCounters.objects.filter(pk=gate.key_id).update(pending=0)
        return real(gate, now)

    monkeypatch.setattr(limits, "refusal", cancel_then_explain)
    assert submit(key).status_code == 202


# --- races --------------------------------------------------------------------------------------


def race_submits(key: Any, count: int) -> list[int]:
    """``count`` submits of ``key`` at the same moment, each on its own connection: 202 or 429."""
    start = threading.Barrier(count)
    statuses: list[int] = []

    def one() -> None:
        start.wait()
        try:
            submit_directly(key)
            statuses.append(202)
        except TooManyRequests:
            statuses.append(429)
        finally:
            connection.close()

    in_threads(one, count)
    return statuses


@pytest.mark.django_db(transaction=True)
def test_submits_racing_for_the_last_pending_slot_have_exactly_one_winner(dispatched):
    for round_ in range(5):
        key = VirtualKeyFactory(max_pending=3)
        KeyCounters.objects.create(virtual_key=key, pending=2)
        statuses = race_submits(key, 6)
        assert sorted(statuses) == [202] + [429] * 5, (round_, statuses)
        assert AsyncJob.objects.filter(virtual_key=key).count() == 1
        assert counters(key).pending == 3


@pytest.mark.django_db(transaction=True)
def test_submits_racing_at_the_request_rate_never_pass_it(dispatched):
    key = VirtualKeyFactory(requests_per_minute=4)
    statuses = race_submits(key, 10)
    assert sorted(statuses) == [202] * 4 + [429] * 6, statuses
    assert AsyncJob.objects.filter(virtual_key=key).count() == 4
