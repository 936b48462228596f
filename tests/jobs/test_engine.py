"""The worker engine: claims a job, calls the provider in its loop, writes the outcome once.

These tests use real threads and committed rows (``transactional_db``), with the upstream faked
at the transport.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from jobs.engine import EngineClosed, JobEngine
from jobs.models import AsyncJob, JobStatus
from providers.transport import HttpResponse, Timeouts
from tests.factories import AsyncJobFactory
from tests.providers.fakes import json_response, openai_completion

pytestmark = pytest.mark.django_db(transaction=True)


class GatedTransport:
    """Answers every call with a completion once ``release`` is set; counts calls in flight."""

    def __init__(self, reply: HttpResponse) -> None:
        self.reply = reply
        self.release = threading.Event()
        self.in_flight = 0
        self.peak = 0
        self.urls: list[str] = []

    async def close(self) -> None:
        """Nothing to release; here to satisfy the Transport protocol."""

    async def post(
        self, url: str, *, headers: dict[str, str], body: bytes, timeouts: Timeouts
    ) -> HttpResponse:
        self.urls.append(url)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            while not self.release.is_set():
                await asyncio.sleep(0.01)
            return self.reply
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


def test_engine_completes_a_job_with_the_providers_result(engines):
    transport = GatedTransport(json_response(200, openai_completion(text="hello")))
    transport.release.set()
    engine = start(engines, transport)
    job = AsyncJobFactory()

    assert engine.run(str(job.pk)) is True
    wait_for(lambda: AsyncJob.objects.get(pk=job.pk).status == JobStatus.COMPLETED)

    job.refresh_from_db()
    assert job.result["choices"][0]["text"] == "hello"
    assert job.status_code == 200
    assert transport.urls == ["http://127.0.0.1:9/v1/completions"]


def test_engine_records_a_failed_job_in_the_error_shape(engines):
    error = {"error": {"message": "bad model", "type": "invalid_request_error", "code": "x"}}
    transport = GatedTransport(json_response(400, error))
    transport.release.set()
    engine = start(engines, transport)
    job = AsyncJobFactory()

    engine.run(str(job.pk))
    wait_for(lambda: AsyncJob.objects.get(pk=job.pk).status == JobStatus.FAILED)

    job.refresh_from_db()
    assert job.status_code == 400
    assert job.error["is_bifrost_error"] is False
    assert job.error["error"]["message"] == "bad model"
    assert job.error["extra_fields"]["model_requested"] == "openai/gpt-test"
    assert [a["status_code"] for a in job.error["extra_fields"]["attempts"]] == [400]


def test_engine_does_not_run_a_job_claimed_elsewhere(engines):
    transport = GatedTransport(json_response(200, openai_completion()))
    engine = start(engines, transport)
    job = AsyncJobFactory(status=JobStatus.PROCESSING, claimed_by="another-worker")
    assert engine.run(str(job.pk)) is False
    assert transport.urls == []


def test_engine_keeps_many_calls_in_flight_and_blocks_beyond_its_limit(engines):
    transport = GatedTransport(json_response(200, openai_completion()))
    engine = start(engines, transport, max_in_flight=120)
    jobs = [AsyncJobFactory() for _ in range(121)]

    for job in jobs[:120]:
        assert engine.run(str(job.pk)) is True
    wait_for(lambda: transport.in_flight == 120)

    blocked = threading.Thread(target=engine.run, args=(str(jobs[120].pk),), daemon=True)
    blocked.start()
    blocked.join(timeout=0.5)
    assert blocked.is_alive(), "the 121st job must wait for a free slot"
    assert AsyncJob.objects.get(pk=jobs[120].pk).status == JobStatus.PENDING

    transport.release.set()
    blocked.join(timeout=10)
    wait_for(lambda: AsyncJob.objects.filter(status=JobStatus.COMPLETED).count() == 121, timeout=30)
    assert transport.peak == 120


def test_shutdown_gives_unfinished_jobs_back_as_pending(dispatched):
    transport = GatedTransport(json_response(200, openai_completion()))
    engine = JobEngine(transport=transport, worker_id="stopping").start()
    job = AsyncJobFactory()
    engine.run(str(job.pk))
    wait_for(lambda: transport.in_flight == 1)

    engine.shutdown(grace=0.2)

    job.refresh_from_db()
    assert (job.status, job.attempts, job.claimed_by) == (JobStatus.PENDING, 0, "")
    assert dispatched == [str(job.pk)]


def test_a_closing_engine_refuses_new_jobs(dispatched):
    transport = GatedTransport(json_response(200, openai_completion()))
    engine = JobEngine(transport=transport, worker_id="closing").start()
    engine.shutdown(grace=0.1)
    job = AsyncJobFactory()
    with pytest.raises(EngineClosed):
        engine.run(str(job.pk))
    assert AsyncJob.objects.get(pk=job.pk).status == JobStatus.PENDING


def test_run_job_task_requeues_when_the_worker_is_shutting_down(monkeypatch):
    from celery.exceptions import Reject

    from jobs import engine as engine_module
    from jobs.tasks import run_job

    monkeypatch.setattr(engine_module, "_engine_closed", True)
    with pytest.raises(Reject) as rejected:
        run_job(str(AsyncJobFactory().pk))
    assert rejected.value.requeue is True
