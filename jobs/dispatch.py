"""Ringing the bell: tell the workers that jobs are pending. A failed publish never fails a submit.

The job row is already committed when this runs; if the broker is down the job stays
``pending``, every engine finds it on its next look (GATEWAY_WORKER_POLL_SECONDS), and the beat
task ``redispatch_stale_jobs`` rings for it again.

A bell carries no job ids. Engines claim pending rows (a fair share per key, each key's oldest
first), as many as they have room for, whichever rows a bell was rung for: a bell only says "jobs
are waiting". What the number of bells does say is how many: one bell per GATEWAY_DISPATCH_BATCH
jobs, so a burst of submits wakes several workers, not one. Submits hand their job to this
process's ``Publisher``, a background thread that rings for whatever queued while it was ringing
the last time: one bell per job when traffic is light (no added wait), one per batch when it is
heavy, so neither the web process nor the worker pays a broker round trip per job.

This module publishes the bell by its task name, so it imports no task: ``jobs.tasks`` imports
the services, and the services import this module, never the other way round.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util
import os
import queue
import threading
import time
from collections.abc import Callable

from celery import current_app
from django.conf import settings
from kombu.exceptions import OperationalError

logger = logging.getLogger(__name__)

# The bell's task name (``jobs.tasks.run_jobs``). Messages already queued by older web processes
# carry job ids; the task accepts and ignores them.
BELL = "jobs.run_jobs"

# While bells go out back to back (the last one ended under BUSY_SECONDS ago), the publisher waits
# LINGER_SECONDS before taking a batch, so a busy web process sends a few larger messages instead
# of one per submit. Publishing a message costs as much CPU as the rest of a submit, so under load
# the wait pays for itself many times; the jobs' rows are committed meanwhile, and engines that
# are busy claim them anyway. When traffic is light it sends at once.
BUSY_SECONDS = 0.01
LINGER_SECONDS = 0.05

# Fail fast when the broker is down: the beat task re-dispatches, the client must not wait.
PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}


def _publish() -> None:
    # The project's Celery app, as ``shared_task`` finds it: jobs/ needs no import of the project.
    current_app.send_task(BELL, retry=True, retry_policy=PUBLISH_RETRY_POLICY)


def dispatch(jobs: int) -> int:
    """Ring for ``jobs`` pending jobs now: one bell per GATEWAY_DISPATCH_BATCH; the bells rung."""
    bells = -(-jobs // settings.GATEWAY_DISPATCH_BATCH)
    for rung in range(bells):
        try:
            _publish()
        except (OperationalError, OSError) as exc:
            logger.warning(
                "broker unavailable, %d bells not rung; engines find the jobs by polling: %s",
                bells - rung,
                type(exc).__name__,
            )
            return rung
        except Exception:
            # The rows are committed and the clients told 202: whatever goes wrong with the
            # bell must not turn that into an error. Engines find the jobs by polling.
            logger.exception("ringing %d bells failed; the jobs stay pending", bells - rung)
            return rung
    return bells


class Publisher:
    """A background thread that rings for the jobs submitted while it was ringing, together.

    ``send`` takes a number of pending jobs and rings for them (``dispatch`` by default). Jobs
    still queued when the process exits are rung for by an exit hook; if the process dies
    before that, the jobs are pending rows that the engines find by polling.
    """

    def __init__(
        self,
        send: Callable[[int], int] = dispatch,
        *,
        busy_seconds: float = BUSY_SECONDS,
        linger_seconds: float = LINGER_SECONDS,
    ) -> None:
        self._send = send
        self._busy_seconds = busy_seconds
        self._linger_seconds = linger_seconds
        # One True per job submitted; None stops the thread.
        self._queue: queue.SimpleQueue[bool | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pid = 0
        self._last_send = 0.0

    def submit(self) -> None:
        """One more job is pending."""
        self._ensure_thread()
        self._queue.put(True)

    def flush(self) -> int:
        """Ring for everything queued, from the calling thread; the bells rung."""
        return sum(self._send(jobs) for jobs in iter(self._take_batch, 0))

    def stop(self) -> None:
        """Stop the thread after it has rung for what is queued."""
        thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            self._queue.put(None)
            thread.join(timeout=10)
        self.flush()

    def _ensure_thread(self) -> None:
        # A forked child (a web server worker, Celery prefork) inherits no running thread.
        # It starts its own.
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(target=self._run, name="job-publisher", daemon=True)
                self._thread.start()

    def _take_batch(self, first: bool = False) -> int:
        """The jobs queued, up to one bell's worth (GATEWAY_DISPATCH_BATCH)."""
        jobs = int(first)
        while jobs < settings.GATEWAY_DISPATCH_BATCH:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # the stop marker stays for the loop to see
                break
            jobs += 1
        return jobs

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            if time.monotonic() - self._last_send < self._busy_seconds:
                time.sleep(self._linger_seconds)
            try:
                self._send(self._take_batch(first))
            except Exception:  # dispatch already logs; the thread must live on
                logger.exception("job publisher: a bell could not be rung")
            # Timed from the bell's end: under load a bell takes longer than BUSY_SECONDS (the
            # request threads hold the interpreter), and timed from its start, every job that
            # queued meanwhile would look like light traffic and get a bell of its own.
            self._last_send = time.monotonic()


_publisher = Publisher()
# Jobs still queued when the process ends are rung for: at interpreter exit, and at the end of
# a multiprocessing child (which some servers' workers are, and which skips atexit hooks).
atexit.register(_publisher.stop)
multiprocessing.util.Finalize(None, _publisher.stop, exitpriority=10)


def dispatch_soon() -> None:
    """Ring for one more pending job from this process's publisher (or now, if so configured)."""
    if settings.GATEWAY_DISPATCH_IN_BACKGROUND:
        _publisher.submit()
    else:
        dispatch(1)
