"""The wait for the write-ahead log that a process's request threads share (jobs/log_flush.py),
and a counted submit that returns only once its commit is on disk, however many run at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from jobs.log_flush import FLUSH_SQL, SharedFlush, shared_flush
from jobs.models import AsyncJob, KeyCounters
from tests.factories import VirtualKeyFactory
from tests.helpers import in_threads, submit_directly

WAIT = 10.0  # seconds any step of these tests may take before it is a hang


class Disk:
    """A flush that records when it began and ended, and can be held until released."""

    def __init__(self) -> None:
        self.begun: list[float] = []
        self.ended: list[float] = []
        self.release = threading.Event()
        self.release.set()
        self.running = threading.Event()
        self.fail_next = False

    def flush(self) -> None:
        self.begun.append(time.monotonic())
        self.running.set()
        assert self.release.wait(WAIT)
        if self.fail_next:
            self.fail_next = False
            raise OSError("the database went away")
        self.ended.append(time.monotonic())


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """``target`` started in a thread; its outcome (returned or raised) lands in the list."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(target())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def queue_behind(shared: SharedFlush, count: int) -> bool:
    """Whether at least ``count`` threads wait on ``shared`` for a flush to end."""
    return len(shared._turn._waiters) >= count  # type: ignore[attr-defined]


def test_a_caller_alone_runs_its_own_flush_at_once():
    disk = Disk()
    SharedFlush().wait(disk.flush)
    assert len(disk.begun) == len(disk.ended) == 1


def test_callers_that_ask_while_a_flush_runs_share_the_next_one():
    disk, shared = Disk(), SharedFlush()
    disk.release.clear()
    first, first_outcome = in_thread(lambda: shared.wait(disk.flush))
    assert disk.running.wait(WAIT)
    asked_at = time.monotonic()
    later = [in_thread(lambda: shared.wait(disk.flush)) for _ in range(5)]
    wait_until(lambda: queue_behind(shared, 5))
    assert all(outcome == [] for _, outcome in later)  # none is served by the running flush
    disk.release.set()
    for thread, _ in [(first, first_outcome), *later]:
        thread.join(WAIT)
    assert first_outcome == [None] and all(outcome == [None] for _, outcome in later)
    # Two flushes for six callers: the second began after the five asked, and served them all.
    assert len(disk.begun) == len(disk.ended) == 2
    assert disk.begun[1] > asked_at


def test_a_flush_that_fails_raises_in_its_thread_and_serves_nobody():
    disk, shared = Disk(), SharedFlush()
    disk.release.clear()
    disk.fail_next = True
    failing, failing_outcome = in_thread(lambda: shared.wait(disk.flush))
    assert disk.running.wait(WAIT)
    waiting, waiting_outcome = in_thread(lambda: shared.wait(disk.flush))
    wait_until(lambda: queue_behind(shared, 1))
    disk.release.set()
    failing.join(WAIT)
    waiting.join(WAIT)
    assert isinstance(failing_outcome[0], OSError)
    # The waiter was not told the failed flush reached the disk: it ran one of its own.
    assert waiting_outcome == [None]
    assert len(disk.begun) == 2 and len(disk.ended) == 1


def test_each_database_has_its_own_shared_flush():
    assert shared_flush("default") is shared_flush("default")
    assert shared_flush("default") is not shared_flush("other")


@pytest.mark.django_db(transaction=True)
def test_counted_submits_at_once_each_return_with_their_commit_on_disk(dispatched):
    """Twelve threads, as many as a web process's request threads, submit one key's jobs at the
    same moment; each checks, as its submit returns, that the log is on disk past its commit."""
    key = VirtualKeyFactory(max_pending=100, requests_per_minute=1000)
    KeyCounters.objects.create(virtual_key=key)
    threads, start = 12, threading.Barrier(12)
    behind: list[str] = []  # commits not yet on disk when their submit returned
    flushes: list[str] = []
    errors: list[BaseException] = []

    def one() -> None:
        written_up_to: list[str] = []

        def note(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            result = execute(sql, params, many, context)
            if sql == FLUSH_SQL:
                flushes.append(sql)
            elif connection.vendor == "postgresql" and "synchronous_commit" in sql:
                lsn = connection.connection.execute("SELECT pg_current_wal_insert_lsn()")
                written_up_to.append(str(lsn.fetchone()[0]))
            return result

        try:
            start.wait(WAIT)
            with connection.execute_wrapper(note):
                submit_directly(key)
            if connection.vendor == "postgresql":
                (on_disk,) = connection.connection.execute(
                    "SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", written_up_to
                ).fetchone()
                if not on_disk:
                    behind.extend(written_up_to)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    in_threads(one, threads, WAIT * 3)
    assert not errors and not behind, (errors, behind)
    assert AsyncJob.objects.filter(virtual_key=key, counted=True).count() == threads
    assert KeyCounters.objects.get(virtual_key=key).pending == threads
    if connection.vendor == "postgresql":
        assert 1 <= len(flushes) <= threads
    else:  # SQLite commits the gate and the job together, synchronously
        assert flushes == []
