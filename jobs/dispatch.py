"""Ringing the bell: publish job ids to the broker. A failed publish never fails a submit.

The job row is already committed when this runs; if the broker is down the job stays
``pending`` and the beat task ``redispatch_stale_jobs`` publishes it again.

One message carries up to ``GATEWAY_DISPATCH_BATCH`` ids. Submits hand their id to this
process's ``Publisher``, a background thread that sends whatever queued while it was sending
the previous message: one id per message when traffic is light (no added wait), many when it is
heavy, so neither the web process nor the worker pays a broker round trip per job.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from uuid import UUID

from django.conf import settings
from kombu.exceptions import OperationalError

logger = logging.getLogger(__name__)

# While bells go out back to back (the last one under BUSY_SECONDS ago), the publisher waits
# LINGER_SECONDS before taking a batch, so a busy web process sends a few larger messages instead
# of one per submit. Publishing a message costs about as much CPU as the rest of a submit, whatever
# the number of ids in it (docs/measurements.md), so under load the wait pays for itself;
# the jobs' rows are committed meanwhile, and engines that are busy claim them anyway. When
# traffic is light (under about 100 submits/s per process) it sends at once.
BUSY_SECONDS = 0.01
LINGER_SECONDS = 0.05

# Fail fast when the broker is down: the beat task re-dispatches, the client must not wait.
PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}


def _publish(job_ids: list[str]) -> None:
    from jobs.tasks import run_jobs

    run_jobs.apply_async(args=[job_ids], retry=True, retry_policy=PUBLISH_RETRY_POLICY)


def dispatch(job_ids: Iterable[UUID | str]) -> int:
    """Publish now, in messages of up to GATEWAY_DISPATCH_BATCH ids; the number published."""
    ids = [str(job_id) for job_id in job_ids]
    size = settings.GATEWAY_DISPATCH_BATCH
    sent = 0
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        try:
            _publish(chunk)
            sent += len(chunk)
        except (OperationalError, OSError) as exc:
            logger.warning(
                "broker unavailable, %d jobs stay pending until re-dispatch: %s",
                len(ids) - sent,
                type(exc).__name__,
            )
            break
        except Exception:
            # The rows are committed and the clients told 202: whatever goes wrong with the
            # bell must not turn that into an error. The beat task publishes the jobs again.
            logger.exception("publishing %d jobs failed; they stay pending", len(ids) - sent)
            break
    return sent


class Publisher:
    """A background thread that publishes queued job ids in batches.

    ``send`` takes a list of ids and publishes them (``dispatch`` by default). Ids still queued
    when the process exits are published by an exit hook; if the process dies before that, the
    jobs are pending rows and beat re-dispatches them.
    """

    def __init__(
        self,
        send: Callable[[Sequence[str]], int] = dispatch,
        *,
        busy_seconds: float = BUSY_SECONDS,
        linger_seconds: float = LINGER_SECONDS,
    ) -> None:
        self._send = send
        self._busy_seconds = busy_seconds
        self._linger_seconds = linger_seconds
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pid = 0
        self._last_send = 0.0

    def submit(self, job_id: UUID | str) -> None:
        self._ensure_thread()
        self._queue.put(str(job_id))

    def flush(self) -> int:
        """Publish everything queued, from the calling thread; the number sent."""
        return sum(self._send(batch) for batch in iter(self._take_batch, []))

    def stop(self) -> None:
        """Stop the thread after it has published what is queued."""
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

    def _take_batch(self, first: str | None = None) -> list[str]:
        batch = [first] if first else []
        while len(batch) < settings.GATEWAY_DISPATCH_BATCH:
            try:
                job_id = self._queue.get_nowait()
            except queue.Empty:
                break
            if job_id is None:
                self._queue.put(None)  # the stop marker stays for the loop to see
                break
            batch.append(job_id)
        return batch

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            if time.monotonic() - self._last_send < self._busy_seconds:
                time.sleep(self._linger_seconds)
            try:
                self._last_send = time.monotonic()
                self._send(self._take_batch(first))
            except Exception:  # dispatch already logs; the thread must live on
                logger.exception("job publisher: a batch could not be sent")


_publisher = Publisher()
# Ids still queued when the process ends are sent: at interpreter exit, and at the end of a
# multiprocessing child (which some servers' workers are, and which skips atexit hooks).
atexit.register(_publisher.stop)
multiprocessing.util.Finalize(None, _publisher.stop, exitpriority=10)


def dispatch_soon(job_id: UUID | str) -> None:
    """Queue the job's bell for this process's publisher (or publish now, if so configured)."""
    if settings.GATEWAY_DISPATCH_IN_BACKGROUND:
        _publisher.submit(job_id)
    else:
        dispatch([job_id])
