"""Ringing the bell: synchronous dispatch in batches, and the background publisher of submits."""

from __future__ import annotations

import threading
import time

from kombu.exceptions import OperationalError

from jobs import dispatch as dispatch_module
from jobs.dispatch import Publisher, dispatch, dispatch_soon


def capture(monkeypatch) -> list[list[str]]:
    messages: list[list[str]] = []
    monkeypatch.setattr(
        "jobs.tasks.run_jobs.apply_async", lambda args, **kwargs: messages.append(list(args[0]))
    )
    return messages


def _wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_dispatch_sends_ids_in_messages_of_the_configured_size(monkeypatch, settings):
    settings.GATEWAY_DISPATCH_BATCH = 2
    messages = capture(monkeypatch)

    assert dispatch(["a", "b", "c", "d", "e"]) == 5

    assert messages == [["a", "b"], ["c", "d"], ["e"]]


def test_dispatch_stops_at_a_broker_failure_and_says_how_many_went(monkeypatch, settings):
    settings.GATEWAY_DISPATCH_BATCH = 1
    sent: list[str] = []

    def publish(args, **kwargs):
        if len(sent) == 2:
            raise OperationalError("connection refused")
        sent.extend(args[0])

    monkeypatch.setattr("jobs.tasks.run_jobs.apply_async", publish)

    assert dispatch(["a", "b", "c", "d"]) == 2
    assert sent == ["a", "b"]


def test_publisher_batches_ids_queued_while_it_was_sending(settings):
    settings.GATEWAY_DISPATCH_BATCH = 100
    gate = threading.Event()
    batches: list[list[str]] = []

    def send(ids):
        batches.append(list(ids))
        gate.wait(timeout=5)  # the first send is slow: the rest queue up meanwhile
        return len(ids)

    publisher = Publisher(send)
    publisher.submit("first")
    _wait_until(lambda: batches)
    for n in range(5):
        publisher.submit(f"later-{n}")
    gate.set()
    publisher.stop()

    assert batches == [["first"], [f"later-{n}" for n in range(5)]]


def test_a_busy_publisher_waits_to_send_ids_that_follow_a_send_together(settings):
    settings.GATEWAY_DISPATCH_BATCH = 100
    batches: list[list[str]] = []
    publisher = Publisher(
        lambda ids: batches.append(list(ids)) or len(ids), busy_seconds=60, linger_seconds=0.5
    )
    publisher.submit("first")
    _wait_until(lambda: batches)
    for n in range(5):  # within the linger after a send: one message, not five
        publisher.submit(f"later-{n}")
    publisher.stop()

    assert batches == [["first"], [f"later-{n}" for n in range(5)]]


def test_an_idle_publisher_sends_at_once(settings):
    batches: list[list[str]] = []
    publisher = Publisher(
        lambda ids: batches.append(list(ids)) or len(ids), busy_seconds=0, linger_seconds=60
    )
    publisher.submit("a")
    _wait_until(lambda: batches)
    publisher.submit("b")
    _wait_until(lambda: len(batches) >= 2)

    assert batches == [["a"], ["b"]]  # neither waited out the 60 s linger
    publisher.stop()


def test_publisher_keeps_running_after_a_failed_send(settings):
    batches: list[list[str]] = []

    def send(ids):
        batches.append(list(ids))
        if len(batches) == 1:
            raise RuntimeError("unexpected")
        return len(ids)

    publisher = Publisher(send)
    publisher.submit("a")
    _wait_until(lambda: batches)
    publisher.submit("b")
    publisher.stop()

    assert batches == [["a"], ["b"]]


def test_publisher_flush_sends_what_is_queued_from_the_calling_thread(settings):
    settings.GATEWAY_DISPATCH_BATCH = 2
    batches: list[list[str]] = []
    publisher = Publisher(lambda ids: batches.append(list(ids)) or len(ids))
    for n in range(3):
        publisher._queue.put(str(n))  # queued, thread never started

    assert publisher.flush() == 3
    assert batches == [["0", "1"], ["2"]]


def test_dispatch_soon_uses_the_background_publisher_when_configured(monkeypatch, settings):
    queued: list[str] = []
    monkeypatch.setattr(dispatch_module._publisher, "submit", queued.append)
    messages = capture(monkeypatch)

    settings.GATEWAY_DISPATCH_IN_BACKGROUND = True
    dispatch_soon("in-background")
    settings.GATEWAY_DISPATCH_IN_BACKGROUND = False
    dispatch_soon("right-now")

    assert queued == ["in-background"]
    assert messages == [["right-now"]]
