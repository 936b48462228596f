"""The worker engine: claims a job, calls the provider in its loop, writes the outcome once.

These tests use real threads and committed rows (``transactional_db``), with the upstream faked
at the transport.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest

from gateway.access.models import KeySpend
from gateway.access.principals import Principal
from jobs import metrics, services
from jobs.engine import JobEngine
from jobs.models import AsyncJob, JobStatus
from providers import pricing
from providers.models import ModelPrice
from providers.transport import HttpResponse, Timeouts
from tests.factories import AsyncJobFactory
from tests.providers.fakes import anthropic_message, json_response, openai_completion, openai_error

pytestmark = pytest.mark.django_db(transaction=True)


class GatedTransport:
    """Answers every call with a completion once ``release`` is set; counts calls in flight.

    With ``answer_first_at_once``, the first call is answered without waiting.
    """

    def __init__(self, reply: HttpResponse) -> None:
        self.reply = reply
        self.release = threading.Event()
        self.answer_first_at_once = False
        self.in_flight = 0
        self.peak = 0
        self.urls: list[str] = []
        self.stopped = 0  # calls cancelled by the engine before they were answered

    async def close(self) -> None:
        """Nothing to release; here to satisfy the Transport protocol."""

    async def post(
        self, url: str, *, headers: dict[str, str], body: bytes, timeouts: Timeouts
    ) -> HttpResponse:
        self.urls.append(url)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            first = len(self.urls) == 1
            while not self.release.is_set() and not (first and self.answer_first_at_once):
                await asyncio.sleep(0.01)
            return self.reply
        except asyncio.CancelledError:
            self.stopped += 1
            raise
        finally:
            self.in_flight -= 1


@pytest.fixture
def engines() -> Iterator[list[JobEngine]]:
    started: list[JobEngine] = []
    yield started
    for engine in started:
        engine.shutdown(grace=5)


def start(engines: list[JobEngine], transport: GatedTransport, **kwargs: int) -> JobEngine:
    engine = JobEngine(transport=transport, worker_id="test-worker", **kwargs).start()
    engines.append(engine)
    return engine


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def status_of(job: AsyncJob) -> str:
    return AsyncJob.objects.get(pk=job.pk).status


def test_engine_completes_a_job_with_the_providers_result(engines):
    transport = GatedTransport(json_response(200, openai_completion(text="hello")))
    transport.release.set()
    engine = start(engines, transport)
    job = AsyncJobFactory()

    engine.wake()
    wait_for(lambda: status_of(job) == JobStatus.COMPLETED)

    job.refresh_from_db()
    assert job.result["choices"][0]["text"] == "hello"
    assert job.status_code == 200
    assert (job.claimed_by, job.attempts) == ("test-worker", 1)
    assert transport.urls == ["http://127.0.0.1:9/v1/completions"]


def test_engine_records_a_failed_job_in_the_error_shape(engines):
    error = {"error": {"message": "bad model", "type": "invalid_request_error", "code": "x"}}
    transport = GatedTransport(json_response(400, error))
    transport.release.set()
    engine = start(engines, transport)
    job = AsyncJobFactory()

    engine.wake()
    wait_for(lambda: status_of(job) == JobStatus.FAILED)

    job.refresh_from_db()
    assert job.status_code == 400
    assert job.error["is_bifrost_error"] is False
    assert job.error["error"]["message"] == "bad model"
    assert job.error["extra_fields"]["model_requested"] == "openai/gpt-test"
    assert [a["status_code"] for a in job.error["extra_fields"]["attempts"]] == [400]


def test_engine_leaves_jobs_claimed_elsewhere_and_finished_ones_alone(engines):
    transport = GatedTransport(json_response(200, openai_completion()))
    transport.release.set()
    engine = start(engines, transport)
    theirs = AsyncJobFactory(status=JobStatus.PROCESSING, claimed_by="another-worker")
    done = AsyncJobFactory(status=JobStatus.COMPLETED, status_code=200, result={"kept": True})
    mine = AsyncJobFactory()

    engine.wake()
    wait_for(lambda: status_of(mine) == JobStatus.COMPLETED)

    assert transport.urls == ["http://127.0.0.1:9/v1/completions"]
    assert AsyncJob.objects.get(pk=theirs.pk).claimed_by == "another-worker"
    assert AsyncJob.objects.get(pk=done.pk).result == {"kept": True}


def test_engine_finds_pending_jobs_without_a_bell(engines, settings):
    settings.GATEWAY_WORKER_POLL_SECONDS = 0.1
    transport = GatedTransport(json_response(200, openai_completion()))
    transport.release.set()
    start(engines, transport)
    time.sleep(0.3)  # the engine has looked once and found nothing
    job = AsyncJobFactory()

    wait_for(lambda: status_of(job) == JobStatus.COMPLETED, timeout=5)


def test_engine_claims_the_oldest_jobs_first(engines):
    transport = GatedTransport(json_response(200, openai_completion()))
    engine = start(engines, transport, max_in_flight=2)
    jobs = [AsyncJobFactory(request={"model": "gpt-test", "prompt": f"p{i}"}) for i in range(4)]

    engine.wake()
    wait_for(lambda: transport.in_flight == 2)

    assert [status_of(job) for job in jobs] == [
        JobStatus.PROCESSING,
        JobStatus.PROCESSING,
        JobStatus.PENDING,
        JobStatus.PENDING,
    ]
    transport.release.set()
    wait_for(lambda: all(status_of(job) == JobStatus.COMPLETED for job in jobs))


def test_engine_keeps_many_calls_in_flight_and_takes_no_more_than_its_limit(engines):
    transport = GatedTransport(json_response(200, openai_completion()))
    engine = start(engines, transport, max_in_flight=120)
    jobs = [AsyncJobFactory() for _ in range(121)]

    engine.wake()
    wait_for(lambda: transport.in_flight == 120)
    engine.wake()
    time.sleep(0.3)

    assert transport.in_flight == 120
    assert AsyncJob.objects.filter(status=JobStatus.PROCESSING).count() == 120
    assert AsyncJob.objects.filter(status=JobStatus.PENDING).count() == 1
    transport.release.set()
    wait_for(lambda: AsyncJob.objects.filter(status=JobStatus.COMPLETED).count() == 121, timeout=30)
    assert transport.peak == 120
    assert {job.pk for job in jobs} == set(
        AsyncJob.objects.filter(status=JobStatus.COMPLETED).values_list("pk", flat=True)
    )


def test_two_engines_never_run_the_same_job(engines):
    transport = GatedTransport(json_response(200, openai_completion()))
    transport.release.set()
    first = JobEngine(transport=transport, worker_id="engine-a").start()
    second = JobEngine(transport=transport, worker_id="engine-b").start()
    engines.extend([first, second])
    jobs = [AsyncJobFactory() for _ in range(60)]

    for _ in range(5):
        first.wake()
        second.wake()
    wait_for(lambda: AsyncJob.objects.filter(status=JobStatus.COMPLETED).count() == 60, timeout=30)

    assert len(transport.urls) == 60
    assert set(AsyncJob.objects.values_list("attempts", flat=True)) == {1}
    assert {job.pk for job in jobs} == set(AsyncJob.objects.values_list("pk", flat=True))


def test_shutdown_gives_unfinished_jobs_back_as_pending(dispatched):
    transport = GatedTransport(json_response(200, openai_completion()))
    engine = JobEngine(transport=transport, worker_id="stopping").start()
    job = AsyncJobFactory()
    engine.wake()
    wait_for(lambda: transport.in_flight == 1)

    engine.shutdown(grace=0.2)

    job.refresh_from_db()
    assert (job.status, job.attempts, job.claimed_by) == (JobStatus.PENDING, 0, "")
    assert dispatched.rung == 1


def test_a_closed_engine_ignores_bells_and_claims_nothing(dispatched):
    transport = GatedTransport(json_response(200, openai_completion()))
    engine = JobEngine(transport=transport, worker_id="closing").start()
    engine.shutdown(grace=0.1)
    job = AsyncJobFactory()

    engine.wake()
    time.sleep(0.2)

    assert AsyncJob.objects.get(pk=job.pk).status == JobStatus.PENDING
    assert transport.urls == []


def test_lease_renewal_never_runs_while_a_finish_batch_is_being_written(
    engines, settings, monkeypatch
):
    # The finish batch holds its rows locked until it commits; a renewal locking the same rows
    # in another order at the same time deadlocks with it on Postgres.
    settings.GATEWAY_JOB_LEASE_SECONDS = 5  # a renewal every 1.25 s
    finishing = threading.Event()
    renewals: list[bool] = []  # per renewal: whether a finish batch was being written
    real_finish, real_renew = services.finish_jobs, services.renew_leases

    def slow_finish(worker_id, finishes):
        finishing.set()
        try:
            time.sleep(2.0)  # longer than a renewal interval
            return real_finish(worker_id, finishes)
        finally:
            finishing.clear()  # a failed write is retried later, outside this window

    def spy_renew(worker_id, job_ids):
        renewals.append(finishing.is_set())
        return real_renew(worker_id, job_ids)

    monkeypatch.setattr(services, "finish_jobs", slow_finish)
    monkeypatch.setattr(services, "renew_leases", spy_renew)
    transport = GatedTransport(json_response(200, openai_completion()))
    transport.answer_first_at_once = True
    engine = start(engines, transport)
    done, running = AsyncJobFactory(), AsyncJobFactory()

    engine.wake()
    wait_for(lambda: status_of(done) == JobStatus.COMPLETED)
    wait_for(lambda: len(renewals) >= 2, timeout=5)
    transport.release.set()
    wait_for(lambda: status_of(running) == JobStatus.COMPLETED)

    assert renewals
    assert not any(renewals)


# --- cancelled jobs ----------------------------------------------------------------------------


def cancel(job: AsyncJob) -> None:
    """Cancel ``job`` as its key's API call does."""
    services.cancel_job(str(job.pk), Principal(virtual_key=job.virtual_key), job.request_type)


def test_engine_stops_the_call_of_a_job_cancelled_while_processing(engines, monkeypatch):
    monkeypatch.setattr("jobs.engine.CANCEL_CHECK_SECONDS", 0.1)
    transport = GatedTransport(json_response(200, openai_completion(text="late")))
    engine = start(engines, transport)
    job = AsyncJobFactory()
    engine.wake()
    wait_for(lambda: transport.in_flight == 1)

    cancel(job)
    wait_for(lambda: transport.stopped == 1, timeout=5)
    wait_for(lambda: not engine._in_flight)
    transport.release.set()  # an answer now would find no one waiting for it
    time.sleep(0.3)

    job.refresh_from_db()
    assert (job.status, job.result, job.status_code, job.error) == ("cancelled", None, None, None)
    assert job.expires_at == job.completed_at + timedelta(seconds=job.result_ttl)
    assert transport.urls == ["http://127.0.0.1:9/v1/completions"]


def test_a_result_that_arrives_after_the_cancel_never_overwrites_it(engines, monkeypatch):
    """The worker may not notice the cancel before its call answers: its finish, conditional on
    the job still processing, writes nothing."""
    monkeypatch.setattr("jobs.engine.CANCEL_CHECK_SECONDS", 3600.0)
    transport = GatedTransport(json_response(200, openai_completion(text="late")))
    engine = start(engines, transport)
    job = AsyncJobFactory()
    engine.wake()
    wait_for(lambda: transport.in_flight == 1)

    cancel(job)
    cancelled_at = AsyncJob.objects.get(pk=job.pk).completed_at
    transport.release.set()
    wait_for(lambda: not engine._in_flight)

    job.refresh_from_db()
    assert (job.status, job.result, job.status_code) == ("cancelled", None, None)
    assert job.completed_at == cancelled_at
    assert transport.stopped == 0  # the call ran to its end; its result was dropped


def test_engine_never_claims_a_job_cancelled_while_pending(engines):
    transport = GatedTransport(json_response(200, openai_completion()))
    transport.release.set()
    # Cancelled before the engine runs: a running engine's own look at the table could claim
    # it in the moment it is pending, before the cancel, which is another test's case.
    cancelled = AsyncJobFactory(request={"prompt": "cancelled"})
    cancel(cancelled)
    later = AsyncJobFactory()
    engine = start(engines, transport)

    engine.wake()
    wait_for(lambda: status_of(later) == JobStatus.COMPLETED)

    assert len(transport.urls) == 1
    cancelled.refresh_from_db()
    assert (cancelled.status, cancelled.attempts, cancelled.claimed_by) == ("cancelled", 0, "")


def test_shutdown_never_gives_a_cancelled_job_back_to_the_queue(dispatched, monkeypatch):
    monkeypatch.setattr("jobs.engine.CANCEL_CHECK_SECONDS", 3600.0)
    transport = GatedTransport(json_response(200, openai_completion()))
    engine = JobEngine(transport=transport, worker_id="test-worker").start()
    job = AsyncJobFactory()
    engine.wake()
    wait_for(lambda: transport.in_flight == 1)
    cancel(job)

    engine.shutdown(grace=0.2)

    assert status_of(job) == JobStatus.CANCELLED


def test_a_short_claim_is_followed_by_another_look_without_a_bell(engines, settings, monkeypatch):
    """A claim may come back short because another engine was locking some of its candidates;
    only an empty claim means the queue is empty."""
    settings.GATEWAY_WORKER_POLL_SECONDS = 60.0
    real_claim = services.claim_pending_jobs
    limits: list[int] = []

    def first_claim_short(limit: int, worker_id: str) -> list[AsyncJob]:
        limits.append(limit)
        return real_claim(1 if len(limits) == 1 else limit, worker_id)

    monkeypatch.setattr(services, "claim_pending_jobs", first_claim_short)
    jobs = [AsyncJobFactory() for _ in range(3)]
    transport = GatedTransport(json_response(200, openai_completion()))
    transport.release.set()
    start(engines, transport, max_in_flight=10)

    wait_for(lambda: all(status_of(job) == JobStatus.COMPLETED for job in jobs), timeout=5)


class ByHostTransport(GatedTransport):
    """The OpenAI upstream refuses (a 400, so the router moves on); Anthropic's answers."""

    def __init__(self) -> None:
        super().__init__(json_response(200, anthropic_message(text="from the fallback")))
        self.release.set()

    async def post(
        self, url: str, *, headers: dict[str, str], body: bytes, timeouts: Timeouts
    ) -> HttpResponse:
        if "/v1/messages" not in url:
            self.urls.append(url)
            return openai_error(400, "invalid_request_error", "no such model")
        return await super().post(url, headers=headers, body=body, timeouts=timeouts)


def test_engine_charges_the_model_that_served_after_a_fallback(engines):
    cost = metrics.COST.labels("fallback-charged", "claude-test")
    counted_before = cost._value.get()
    ModelPrice.objects.create(
        provider="anthropic", model="claude-test", input_per_million=1, output_per_million=1
    )
    pricing.clear_cache()
    engine = start(engines, ByHostTransport())
    job = AsyncJobFactory(fallbacks=["anthropic/claude-test"], virtual_key__name="fallback-charged")

    engine.wake()
    wait_for(lambda: status_of(job) == JobStatus.COMPLETED)

    job.refresh_from_db()
    usage = job.result["usage"]
    tokens = usage["prompt_tokens"] + usage["completion_tokens"]
    assert job.cost_usd == Decimal(tokens) / 1_000_000
    [row] = KeySpend.objects.filter(virtual_key=job.virtual_key)
    assert (row.model, row.requests, row.spend_usd) == ("anthropic/claude-test", 1, job.cost_usd)
    # The metric counts the same charge, under the key's name and the served model.
    wait_for(lambda: cost._value.get() > counted_before)
    assert cost._value.get() - counted_before == pytest.approx(float(job.cost_usd))
