"""Waiting for Postgres' write-ahead log to reach the disk, one wait shared by a process's threads.

A counted submit commits without waiting for the disk, so that its key's counters row is
released at once (``jobs/sql.py: insert_counted_job``); the client hears 202 only once the log
is on disk past that commit. Writing anything to the log in a transaction that commits
synchronously waits for that: the flush takes every record before its own with it. So one flush
serves every thread whose commit returned before the flush began, and a process's request
threads take turns: while one thread's flush runs, the threads that ask meanwhile wait for it to
end, and one of them then flushes for all of them. Under load one flush statement answers for
many submits; alone, a submit runs its own at once (docs/measurements.md, "One flush for many
submits").
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

# A transaction that writes to the log commits synchronously. An empty message is the cheapest
# such write: it takes no lock and touches no table. (A transaction that only takes an id writes
# nothing to the log but its commit, which is then asynchronous: it would not do.) Logical
# decoding, where it is used, sees these messages under this prefix.
FLUSH_SQL = "SELECT pg_logical_emit_message(true, 'gateway.flush', '')"


class SharedFlush:
    """The flushes of one database in this process, numbered in the order they begin. At most
    one runs at a time; a caller is served by the first flush that begins after it asked."""

    def __init__(self) -> None:
        self._turn = threading.Condition(threading.Lock())
        self._begun = 0  # the number of the last flush begun
        self._done = 0  # the number of the last flush that reached the disk
        self._failed = 0  # the number of the last flush that raised

    @property
    def _running(self) -> bool:
        """Whether a flush has begun and not ended (one runs at a time, and each that ends
        is either done or failed)."""
        return self._begun > max(self._done, self._failed)

    def wait(self, flush: Callable[[], object]) -> None:
        """Return once a flush begun after this call has ended; ``flush`` runs one on the
        caller's own connection when it is the caller's turn.

        A flush that fails raises in the thread that ran it, and serves nobody. The callers that
        waited for that very flush then run one each, at once, as if flushes were not shared:
        when the database is away, each learns it after one wait of its own rather than after
        every caller before it has waited in turn."""
        with self._turn:
            # A flush running now may have begun before the caller's commit: only a later one
            # is sure to cover it.
            needed = self._begun + 1
            while self._done < needed:
                if self._failed >= needed:
                    break
                if self._running:
                    self._turn.wait()
                    continue
                self._begun += 1
                number = self._begun
                flushed = False
                self._turn.release()  # others queue up while this one waits for the disk
                try:
                    flush()
                    flushed = True
                finally:
                    self._turn.acquire()
                    if flushed:
                        self._done = number
                    else:
                        self._failed = number
                    self._turn.notify_all()
            else:
                return
        flush()


_shared: dict[str, SharedFlush] = {}
# A process forked while one of its threads held a turn would wait for that turn forever.
os.register_at_fork(after_in_child=_shared.clear)


def shared_flush(alias: str) -> SharedFlush:
    """The process's flushes of database ``alias``."""
    return _shared.get(alias) or _shared.setdefault(alias, SharedFlush())
