"""The wait for the write-ahead log that a process's request threads share (jobs/log_flush.py),
and a counted submit that returns only once its commit is on disk, however many run at once."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from jobs import log_flush
from jobs.log_flush import FLUSH_SQL, SharedFlush, shared_flush
from jobs.models import AsyncJob, KeyCounters
from tests.factories import VirtualKeyFactory
from tests.helpers import in_threads, submit_directly

WAIT = 10.0  # seconds any step of these tests may take before it is a hang


class Disk:
    """A flush that records when each call began and ended (numbered from 1 in the order they
    began); a call can be held until released, or made to fail."""

    def __init__(self, fail: frozenset[int] = frozenset()) -> None:
        self.begun: list[int] = []
        self.ended: list[int] = []
        self.fail = fail
        self._numbers = itertools.count(1)
        self._holds: dict[int, threading.Event] = {}

    def hold(self, *numbers: int) -> threading.Event:
        """Calls ``numbers`` wait, once begun, until the event returned is set."""
        release = threading.Event()
        self._holds |= dict.fromkeys(numbers, release)
        return release

    def flush(self) -> None:
        number = next(self._numbers)
        self.begun.append(number)
        if number in self._holds:
            assert self._holds[number].wait(WAIT)
        if number in self.fail:
            raise OSError("the database went away")
        self.ended.append(number)


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


def waiting_on(shared: SharedFlush) -> int:
    """How many threads wait on ``shared`` for a flush to end (the condition's own count)."""
    return len(shared._turn._waiters)  # type: ignore[attr-defined]


def callers(
    shared: SharedFlush, disk: Disk, count: int
) -> list[tuple[threading.Thread, list[Any]]]:
    """``count`` threads calling ``shared.wait`` with ``disk``'s flush."""
    return [in_thread(lambda: shared.wait(disk.flush)) for _ in range(count)]


def ended(started: list[tuple[threading.Thread, list[Any]]]) -> list[Any]:
    """Each thread's outcome, once all have ended."""
    for thread, _ in started:
        thread.join(WAIT)
    return [outcome[0] if outcome else "still running" for _, outcome in started]


def test_a_caller_alone_runs_its_own_flush_at_once():
    disk = Disk()
    SharedFlush().wait(disk.flush)
    assert disk.begun == disk.ended == [1]


def test_callers_that_ask_while_a_flush_runs_share_the_next_one():
    disk, shared = Disk(), SharedFlush()
    release = disk.hold(1)
    first = callers(shared, disk, 1)
    wait_until(lambda: disk.begun == [1])
    later = callers(shared, disk, 5)
    wait_until(lambda: waiting_on(shared) == 5)
    assert all(outcome == [] for _, outcome in later)  # none is served by the running flush
    release.set()
    assert ended(first + later) == [None] * 6
    # Two flushes for six callers: the second began after the five asked, and served them all.
    assert disk.begun == disk.ended == [1, 2]


def test_a_flush_that_fails_raises_in_its_thread_and_serves_nobody():
    disk, shared = Disk(fail=frozenset({1})), SharedFlush()
    release = disk.hold(1)
    failing = callers(shared, disk, 1)
    wait_until(lambda: disk.begun == [1])
    waiting = callers(shared, disk, 1)
    wait_until(lambda: waiting_on(shared) == 1)
    release.set()
    (error,) = ended(failing)
    assert isinstance(error, OSError)
    # The waiter was not told the failed flush reached the disk: the next flush served it.
    assert ended(waiting) == [None]
    assert disk.begun == [1, 2] and disk.ended == [2]


def test_the_callers_of_a_flush_that_fails_each_run_one_at_once():
    """Three callers wait for flush 2, which fails: its runner raises, and the other two run a
    flush each, both at the same time rather than in turn (a database that is away costs each
    caller one wait, not one per caller before it)."""
    disk, shared = Disk(fail=frozenset({2})), SharedFlush()
    release_first, release_own = disk.hold(1), disk.hold(3, 4)
    first = callers(shared, disk, 1)
    wait_until(lambda: disk.begun == [1])
    three = callers(shared, disk, 3)
    wait_until(lambda: waiting_on(shared) == 3)
    release_first.set()
    wait_until(lambda: sorted(disk.begun) == [1, 2, 3, 4])  # 3 and 4 run together
    assert disk.ended == [1]
    release_own.set()
    outcomes = ended(first + three)
    assert outcomes[0] is None
    errors = [outcome for outcome in outcomes[1:] if isinstance(outcome, OSError)]
    assert len(errors) == 1 and outcomes[1:].count(None) == 2
    assert sorted(disk.ended) == [1, 3, 4]


def test_a_forked_process_starts_with_no_flush_of_its_parent():
    shared_flush("default")
    child = os.fork()
    if child == 0:  # the child: its table of flushes must be empty
        os._exit(0 if not log_flush._shared else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert "default" in log_flush._shared


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
