"""Ringing the bell: bells per batch of jobs, and the background publisher of submits."""

from __future__ import annotations

import threading
import time

from kombu.exceptions import OperationalError

from gateway.celery import app as celery_app
from jobs import dispatch as dispatch_module
from jobs.dispatch import Publisher, dispatch, dispatch_soon
from jobs.tasks import run_jobs
from tests.helpers import Bells


def _wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_bell_is_a_message_for_the_run_jobs_task_that_names_no_job(monkeypatch, settings):
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(
        celery_app, "send_task", lambda name, **options: sent.append((name, options))
    )

    assert dispatch(1) == 1

    [(name, options)] = sent
    assert celery_app.tasks[name].run is run_jobs.run
    assert "args" not in options and "kwargs" not in options
    assert options["retry_policy"] == dispatch_module.PUBLISH_RETRY_POLICY


def test_dispatch_rings_one_bell_per_batch_of_jobs(dispatched, settings):
    settings.GATEWAY_DISPATCH_BATCH = 2

    assert dispatch(5) == 3
    assert dispatch(0) == 0

    assert dispatched.rung == 3


def test_dispatch_stops_at_a_broker_failure_and_says_how_many_bells_rang(monkeypatch, settings):
    settings.GATEWAY_DISPATCH_BATCH = 1
    bells = Bells()

    def publish():
        if bells.rung == 2:
            raise OperationalError("connection refused")
        bells.ring()

    monkeypatch.setattr(dispatch_module, "_publish", publish)

    assert dispatch(4) == 2
    assert bells.rung == 2


def test_publisher_rings_once_for_the_jobs_queued_while_it_was_ringing(settings):
    settings.GATEWAY_DISPATCH_BATCH = 100
    gate = threading.Event()
    batches: list[int] = []

    def send(jobs):
        batches.append(jobs)
        gate.wait(timeout=5)  # the first bell is slow: the next jobs queue up meanwhile
        return 1

    publisher = Publisher(send)
    publisher.submit()
    _wait_until(lambda: batches)
    for _ in range(5):
        publisher.submit()
    gate.set()
    publisher.stop()

    assert batches == [1, 5]


def test_a_busy_publisher_waits_to_ring_once_for_the_jobs_that_follow_a_bell(settings):
    settings.GATEWAY_DISPATCH_BATCH = 100
    batches: list[int] = []
    publisher = Publisher(
        lambda jobs: batches.append(jobs) or 1, busy_seconds=60, linger_seconds=0.5
    )
    publisher.submit()
    _wait_until(lambda: batches)
    for _ in range(5):  # within the linger after a bell: one bell, not five
        publisher.submit()
    publisher.stop()

    assert batches == [1, 5]


def test_a_publisher_whose_bells_are_slow_still_waits_for_the_jobs_that_follow(settings):
    # Under load a bell takes longer than busy_seconds; the jobs that follow it are still busy
    # traffic, rung for together after the linger, not one bell each.
    settings.GATEWAY_DISPATCH_BATCH = 100
    batches: list[int] = []
    rung = threading.Event()

    def send(jobs):
        if not batches:
            time.sleep(1.2)  # the first bell takes longer than busy_seconds
        batches.append(jobs)
        rung.set()
        return 1

    publisher = Publisher(send, busy_seconds=1.0, linger_seconds=0.5)
    publisher.submit()
    assert rung.wait(timeout=5)
    for _ in range(3):  # spaced out, within the linger
        publisher.submit()
        time.sleep(0.05)
    publisher.stop()

    assert batches == [1, 3]


def test_an_idle_publisher_rings_at_once(settings):
    batches: list[int] = []
    publisher = Publisher(lambda jobs: batches.append(jobs) or 1, busy_seconds=0, linger_seconds=60)
    publisher.submit()
    _wait_until(lambda: batches)
    publisher.submit()
    _wait_until(lambda: len(batches) >= 2)

    assert batches == [1, 1]  # neither waited out the 60 s linger
    publisher.stop()


def test_publisher_keeps_running_after_a_failed_bell(settings):
    batches: list[int] = []

    def send(jobs):
        batches.append(jobs)
        if len(batches) == 1:
            raise RuntimeError("unexpected")
        return 1

    publisher = Publisher(send)
    publisher.submit()
    _wait_until(lambda: batches)
    publisher.submit()
    publisher.stop()

    assert batches == [1, 1]


def test_publisher_flush_rings_for_what_is_queued_from_the_calling_thread(settings):
    settings.GATEWAY_DISPATCH_BATCH = 2
    batches: list[int] = []
    publisher = Publisher(lambda jobs: batches.append(jobs) or 1)
    for _ in range(3):
        publisher._queue.put(True)  # queued, thread never started

    assert publisher.flush() == 2
    assert batches == [2, 1]


def test_dispatch_soon_uses_the_background_publisher_when_configured(
    monkeypatch, settings, dispatched
):
    queued: list[None] = []
    monkeypatch.setattr(dispatch_module._publisher, "submit", lambda: queued.append(None))

    settings.GATEWAY_DISPATCH_IN_BACKGROUND = True
    dispatch_soon()
    settings.GATEWAY_DISPATCH_IN_BACKGROUND = False
    dispatch_soon()

    assert len(queued) == 1
    assert dispatched.rung == 1
