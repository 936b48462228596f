"""The worker's engine: one asyncio loop per worker process keeping many provider calls in flight.

Celery delivers job ids to a few task threads; each hands its id to ``JobEngine.run``, which
waits for a free slot (at most GATEWAY_WORKER_MAX_IN_FLIGHT jobs per process), claims the row
and returns, and the call goes on in the loop. Database work runs in a small thread pool (a
handful of connections per process, none held across a provider call). Leases of the jobs in
flight are renewed periodically, so a dead worker's jobs are recovered by the beat task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections

from jobs import outcomes, services
from jobs.models import AsyncJob
from providers import registry
from providers.base import Credentials, Target
from providers.routing import RetryPolicy, route_completion
from providers.transport import AiohttpTransport, Timeouts, Transport

logger = logging.getLogger(__name__)
T = TypeVar("T")

DB_THREADS = 4
FINISH_RETRY_SECONDS = 300.0
CLAIM_TIMEOUT = 60.0


class EngineClosed(RuntimeError):
    """The worker is shutting down; the job should go back to the queue."""


def _in_db_thread(fn: Callable[..., T], *args: Any) -> Callable[[], T]:
    def call() -> T:
        close_old_connections()  # drop a connection broken by a database restart
        return fn(*args)

    return call


def _credentials_for(job: AsyncJob) -> tuple[list[Target], dict[str, Credentials | None]]:
    targets = [Target(job.provider, job.model)] + [Target.parse(f) for f in job.fallbacks]
    credentials: dict[str, Credentials | None] = {}
    for target in targets:
        if target.provider not in credentials:
            entry = registry.get_provider(target.provider)
            credentials[target.provider] = entry.choose_credentials() if entry else None
    return targets, credentials


class JobEngine:
    def __init__(
        self,
        *,
        max_in_flight: int | None = None,
        worker_id: str | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.max_in_flight = max_in_flight or settings.GATEWAY_WORKER_MAX_IN_FLIGHT
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._slots = threading.BoundedSemaphore(self.max_in_flight)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="job-engine", daemon=True
        )
        self._db = ThreadPoolExecutor(max_workers=DB_THREADS, thread_name_prefix="job-db")
        self._transport = transport or AiohttpTransport()
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._closing = False
        self._renewer: asyncio.Future[None] | None = None
        self.policy = RetryPolicy(
            retries=settings.GATEWAY_RETRIES,
            base_delay=settings.GATEWAY_RETRY_BASE_DELAY,
            max_delay=settings.GATEWAY_RETRY_MAX_DELAY,
        )
        self.timeouts = Timeouts(
            total=settings.GATEWAY_UPSTREAM_TIMEOUT,
            connect=settings.GATEWAY_UPSTREAM_CONNECT_TIMEOUT,
        )

    # --- called from other threads ------------------------------------------------------------
    def start(self) -> JobEngine:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start_renewer(), self._loop).result()
        logger.info(
            "job engine %s started: up to %d jobs in flight", self.worker_id, self.max_in_flight
        )
        return self

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def run(self, job_id: str) -> bool:
        """Claim the job and start it; blocks while the engine is full. True if claimed here."""
        if self._closing:
            raise EngineClosed("the job engine is shutting down")
        self._slots.acquire()
        try:
            if self._closing:  # the slot was freed by the shutdown's drain
                raise EngineClosed("the job engine is shutting down")
            future = asyncio.run_coroutine_threadsafe(self._claim_and_start(job_id), self._loop)
            try:
                claimed = future.result(timeout=CLAIM_TIMEOUT)
            except TimeoutError:
                future.cancel()
                raise EngineClosed("the job engine did not answer in time") from None
        except BaseException:
            self._slots.release()
            raise
        if not claimed:
            self._slots.release()
        return claimed

    def shutdown(self, grace: float = 30.0) -> None:
        """Let jobs in flight finish for ``grace`` seconds, then give the rest back as pending."""
        self._closing = True
        future = asyncio.run_coroutine_threadsafe(self._drain(grace), self._loop)
        try:
            future.result(timeout=grace + 30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._close_db_connections()

    def _close_db_connections(self) -> None:
        """Close the connection each database thread holds, then stop the threads.

        One closing call per thread: the barrier keeps each call on its own thread.
        """
        barrier = threading.Barrier(DB_THREADS)

        def close() -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=5)
            connections.close_all()

        for _ in range(DB_THREADS):
            self._db.submit(close)
        self._db.shutdown(wait=True)

    # --- inside the loop --------------------------------------------------------------------------
    async def _db_call(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._loop.run_in_executor(self._db, _in_db_thread(fn, *args))

    async def _claim_and_start(self, job_id: str) -> bool:
        job = await self._db_call(services.claim_job, job_id, self.worker_id)
        if job is None:
            return False
        task = self._loop.create_task(self._execute(job), name=f"job-{job.pk}")
        self._in_flight[str(job.pk)] = task
        task.add_done_callback(lambda _: self._done(str(job.pk)))
        return True

    def _done(self, job_id: str) -> None:
        self._in_flight.pop(job_id, None)
        self._slots.release()

    async def _execute(self, job: AsyncJob) -> None:
        try:
            targets, credentials = await self._db_call(_credentials_for, job)
            outcome = await asyncio.wait_for(
                route_completion(
                    targets,
                    job.request,
                    transport=self._transport,
                    credentials=credentials,
                    adapters=registry.ADAPTERS,
                    policy=self.policy,
                    timeouts=self.timeouts,
                ),
                timeout=settings.GATEWAY_JOB_TIMEOUT,
            )
            terminal = outcomes.from_outcome(job, outcome)
        except TimeoutError:
            terminal = outcomes.timed_out(job, settings.GATEWAY_JOB_TIMEOUT)
        except DatabaseError:
            # Credentials could not be read; the lease will lapse and the job be tried again.
            logger.warning("job %s: database unavailable before the call; left for retry", job.pk)
            return
        await self._finish(job, terminal)

    async def _finish(self, job: AsyncJob, terminal: outcomes.Terminal) -> None:
        delay, waited = 0.5, 0.0
        while True:
            try:
                written = await self._db_call(
                    lambda: services.finish_job(
                        job.pk,
                        self.worker_id,
                        result_ttl=job.result_ttl,
                        status_code=terminal.status_code,
                        result=terminal.result,
                        error=terminal.error,
                    )
                )
            except DatabaseError as exc:
                if waited >= FINISH_RETRY_SECONDS:
                    logger.error(
                        "job %s: result could not be written (%s); the lease will "
                        "lapse and the job run again",
                        job.pk,
                        type(exc).__name__,
                    )
                    return
                await asyncio.sleep(delay)
                waited += delay
                delay = min(delay * 2, 10.0)
                continue
            if not written:
                logger.warning("job %s: no longer held by this worker; result dropped", job.pk)
            return

    async def _start_renewer(self) -> None:
        self._renewer = self._loop.create_task(self._renew_leases_forever())

    async def _renew_leases_forever(self) -> None:
        interval = max(1.0, settings.GATEWAY_JOB_LEASE_SECONDS / 4)
        while True:
            await asyncio.sleep(interval)
            job_ids = list(self._in_flight)
            if not job_ids:
                continue
            try:
                await self._db_call(services.renew_leases, self.worker_id, job_ids)
            except DatabaseError as exc:
                logger.warning("lease renewal failed: %s", type(exc).__name__)

    async def _drain(self, grace: float) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
        tasks = list(self._in_flight.values())
        if tasks:
            logger.info("waiting up to %g s for %d jobs in flight", grace, len(tasks))
            await asyncio.wait(tasks, timeout=grace)
        left = list(self._in_flight)
        for task in list(self._in_flight.values()):
            task.cancel()
        if left:
            released = await self._db_call(services.release_jobs, self.worker_id, left)
            logger.info("gave %d unfinished jobs back to the queue", released)
        await self._transport.close()


_engine: JobEngine | None = None
_engine_closed = False
_engine_lock = threading.Lock()


def get_engine() -> JobEngine:
    """This process's engine, started on first use (so each prefork child gets its own)."""
    global _engine
    with _engine_lock:
        if _engine_closed:
            raise EngineClosed("this worker is shutting down")
        if _engine is None:
            _engine = JobEngine().start()
        return _engine


def shutdown_engine(grace: float = 30.0) -> None:
    """Drain this process's engine; no new one starts afterwards."""
    global _engine, _engine_closed
    with _engine_lock:
        engine, _engine, _engine_closed = _engine, None, True
    if engine is not None:
        engine.shutdown(grace)
