"""The worker's engine: one asyncio loop per worker process keeping many provider calls in flight.

The job rows are the queue. The engine claims pending jobs itself, a fair share per key (the
keys with the fewest jobs processing first, each key's oldest first), in batches of up to its
free capacity, never more (one conditional UPDATE per batch; ``FOR UPDATE SKIP LOCKED`` on
Postgres, so engines on many machines never wait for each other). Broker messages are bells:
``wake()`` makes the engine claim at once; without one it still looks every
GATEWAY_WORKER_POLL_SECONDS, so a lost or mis-delivered bell delays a job, never loses it.
The engine starts with its worker process (``jobs.tasks`` connects the worker's signals), not
with the first bell: a worker started while the broker is down claims pending jobs all the same.

At most GATEWAY_WORKER_MAX_IN_FLIGHT jobs run per process. Database work runs in a small thread
pool (a handful of connections per process, none held across a provider call); terminal states
are written in batches. Leases of the jobs in flight are renewed periodically, so a dead
worker's jobs are recovered by the beat task. Every CANCEL_CHECK_SECONDS the engine asks which
of its jobs in flight their callers have cancelled, and stops those calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections
from django.utils import timezone
from structlog.contextvars import bind_contextvars

from gateway.access.models import VirtualKey
from jobs import heartbeats, metrics, outcomes, services
from jobs.models import AsyncJob
from jobs.request_types import BY_TYPE
from jobs.token_usage import token_usage
from jobs.webhooks.deliverer import WebhookDeliverer
from providers import registry
from providers.base import Adapter, Credentials, Target
from providers.logsafe import logsafe
from providers.routing import RetryPolicy, RoutingOutcome, route_request
from providers.transport import AiohttpTransport, Timeouts, Transport

logger = logging.getLogger(__name__)
T = TypeVar("T")

DB_THREADS = 4
FINISH_RETRY_SECONDS = 300.0
CLAIM_BATCH = 200  # jobs claimed per statement, at most
FINISH_BATCH = 200  # terminal states written per transaction
CLAIM_ERROR_PAUSE = 1.0  # seconds before claiming again after a database error
# How often the jobs in flight are checked for a cancel, so how long a cancelled job's call may
# go on: one indexed read of at most max-in-flight primary keys per interval.
CANCEL_CHECK_SECONDS = 1.0


def _in_db_thread(fn: Callable[..., T], *args: Any) -> Callable[[], T]:
    def call() -> T:
        close_old_connections()  # drop a connection broken by a database restart
        return fn(*args)

    return call


ADMIN_KEY_NAME = "admin-jwt"  # the metrics' ``key`` of jobs submitted with an admin JWT


@dataclass
class Claimed:
    """A job this engine holds, with where to send it and whose it is."""

    job: AsyncJob
    targets: list[Target]
    credentials: dict[str, Credentials | None]
    key_name: str = ADMIN_KEY_NAME


def _credentials_for(job: AsyncJob) -> tuple[list[Target], dict[str, Credentials | None]]:
    targets = [Target(job.provider, job.model)] + [Target.parse(f) for f in job.fallbacks]
    credentials: dict[str, Credentials | None] = {}
    for target in targets:
        if target.provider not in credentials:
            entry = registry.get_provider(target.provider)
            credentials[target.provider] = entry.choose_credentials() if entry else None
    return targets, credentials


def _adapters_for(job: AsyncJob) -> Mapping[str, Adapter]:
    """The adapters of the job's request type, by provider protocol; none for a type this
    gateway does not know (a row written by another version), which then fails the job."""
    kind = BY_TYPE.get(job.request_type)
    return kind.adapters if kind is not None else {}


# Virtual key names by id, for the token metrics: read once per key and process (a key
# renamed later keeps its first name in this process's samples).
_key_names: dict[int, str] = {}


def _key_name(key_id: int | None) -> str:
    if key_id is None:
        return ADMIN_KEY_NAME
    if key_id not in _key_names:
        name = VirtualKey.objects.filter(pk=key_id).values_list("name", flat=True).first()
        _key_names[key_id] = name or f"key-{key_id}"
    return _key_names[key_id]


def _claim_batch(limit: int, worker_id: str) -> list[Claimed]:
    """Claim up to ``limit`` pending jobs and resolve their targets, in one database-thread call."""
    claimed = []
    for job in services.claim_pending_jobs(limit, worker_id):
        targets, credentials = _credentials_for(job)
        claimed.append(Claimed(job, targets, credentials, _key_name(job.virtual_key_id)))
    return claimed


def _count_calls(outcome: RoutingOutcome) -> None:
    """Each upstream call's duration, the retries and the fallbacks tried, for the metrics."""
    targets: list[tuple[str, str]] = []
    for attempt in outcome.attempts:
        target = (attempt.provider, attempt.model)
        if target in targets:
            metrics.RETRIES.labels(*target).inc()
        else:
            if targets:
                metrics.FALLBACKS.labels(*target).inc()
            targets.append(target)
        if attempt.seconds is not None:
            result = "ok" if attempt.status_code == 200 and attempt.code is None else None
            kind = result or ("transient_error" if attempt.retryable else "permanent_error")
            metrics.UPSTREAM_SECONDS.labels(*target, kind).observe(attempt.seconds)


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
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="job-engine", daemon=True
        )
        self._db = ThreadPoolExecutor(max_workers=DB_THREADS, thread_name_prefix="job-db")
        self._transport = transport or AiohttpTransport(max_connections=self.max_in_flight)
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._closing = False
        self._renewer: asyncio.Future[None] | None = None
        # Set by a bell, a poll or a freed slot; ``_maybe_more``: pending jobs may be waiting.
        self._claim_wakeup: asyncio.Event | None = None
        self._maybe_more = True
        # Terminal writes are batched: whatever queued while the previous batch was written
        # goes in the next transaction, so there is no fixed wait and no per-job commit.
        self._finishes: list[tuple[services.Finish, asyncio.Future[bool]]] = []
        self._finish_wakeup: asyncio.Event | None = None
        # Finish batches and lease renewals both update rows this engine holds; one at a time.
        # A finish batch keeps its rows locked until it commits, and a renewal running beside
        # it locks many of the same rows in an order of the planner's choosing: on Postgres the
        # two deadlock, and one of them is aborted.
        self._row_writes = asyncio.Lock()
        self._batchers: list[asyncio.Task[None]] = []
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
        asyncio.run_coroutine_threadsafe(self._start_loop_tasks(), self._loop).result()
        logger.info(
            "job engine %s started: up to %d jobs in flight", self.worker_id, self.max_in_flight
        )
        return self

    def wake(self) -> None:
        """A bell: pending jobs are waiting; claim what fits now (unless shutting down)."""
        if not self._closing:
            self._loop.call_soon_threadsafe(self._ring)

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

    def _ring(self) -> None:
        self._maybe_more = True
        if self._claim_wakeup is not None:
            self._claim_wakeup.set()

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(settings.GATEWAY_WORKER_POLL_SECONDS)
            self._ring()

    async def _claim_forever(self) -> None:
        assert self._claim_wakeup is not None
        while True:
            await self._claim_wakeup.wait()
            self._claim_wakeup.clear()
            while self._maybe_more and not self._closing:
                free = self.max_in_flight - len(self._in_flight)
                if free <= 0:
                    break  # a finishing job rings again
                limit = min(free, CLAIM_BATCH)
                try:
                    claimed = await self._db_call(_claim_batch, limit, self.worker_id)
                except DatabaseError as exc:
                    logger.warning("claiming jobs failed: %s", type(exc).__name__)
                    await asyncio.sleep(CLAIM_ERROR_PAUSE)
                    continue
                for item in claimed:
                    self._start(item)
                if not claimed:
                    # Only an empty claim says the queue was empty a moment ago: a short one
                    # may have skipped candidates another engine was claiming at that moment.
                    self._maybe_more = False

    def _start(self, item: Claimed) -> None:
        job_id = str(item.job.pk)
        task = self._loop.create_task(self._execute(item), name=f"job-{job_id}")
        self._in_flight[job_id] = task
        metrics.set_calls_in_flight(self.worker_id, len(self._in_flight))
        task.add_done_callback(lambda _: self._done(job_id))

    def _done(self, job_id: str) -> None:
        self._in_flight.pop(job_id, None)
        metrics.set_calls_in_flight(self.worker_id, len(self._in_flight))
        if self._maybe_more and self._claim_wakeup is not None:
            self._claim_wakeup.set()

    async def _execute(self, claimed: Claimed) -> None:
        job = claimed.job
        # The task runs in a copy of the loop's context: the id stays with this job's lines.
        bind_contextvars(job_id=str(job.pk))
        started = time.monotonic()
        outcome: RoutingOutcome | None = None
        try:
            outcome = await asyncio.wait_for(
                route_request(
                    claimed.targets,
                    job.request,
                    transport=self._transport,
                    credentials=claimed.credentials,
                    adapters=_adapters_for(job),
                    policy=self.policy,
                    timeouts=self.timeouts,
                ),
                timeout=settings.GATEWAY_JOB_TIMEOUT,
            )
            terminal = outcomes.from_outcome(job, outcome)
        except TimeoutError:
            terminal = outcomes.timed_out(job, settings.GATEWAY_JOB_TIMEOUT)
        if outcome is not None:
            _count_calls(outcome)
        finish = services.Finish(
            job.pk,
            job.result_ttl,
            terminal.status_code,
            terminal.result,
            terminal.error,
            served_by=terminal.served_by,
            virtual_key_id=job.virtual_key_id,
            key_name=claimed.key_name,
        )
        written = self._loop.create_future()
        self._finishes.append((finish, written))
        assert self._finish_wakeup is not None
        self._finish_wakeup.set()
        if not await written:
            logger.warning("job %s: no longer held by this worker; result dropped", job.pk)
            return
        self._report(claimed, outcome, terminal, time.monotonic() - started)

    @staticmethod
    def _report(
        claimed: Claimed,
        outcome: RoutingOutcome | None,
        terminal: outcomes.Terminal,
        run_seconds: float,
    ) -> None:
        """The finished job's metrics and its one log line."""
        job = claimed.job
        served = outcome.served_by if outcome is not None else None
        provider, model = (served.provider, served.model) if served else (job.provider, job.model)
        status = "failed" if terminal.error is not None else "completed"
        metrics.count_finished(status, job.request_type, provider, model)
        used = token_usage(terminal.result)
        metrics.count_tokens(claimed.key_name, model, used)
        queued = (job.started_at or timezone.now()) - job.created_at
        logger.info(
            "job finished",
            extra={
                "request_type": job.request_type,
                # The model is the caller's text.
                "provider": logsafe(provider),
                "model": logsafe(model),
                "status": status,
                "status_code": terminal.status_code,
                "queue_wait_s": round(queued.total_seconds(), 3),
                "run_time_s": round(run_seconds, 3),
                "tries": len(outcome.attempts) if outcome is not None else 0,
                "prompt_tokens": used.prompt,
                "completion_tokens": used.completion,
            },
        )

    async def _finish_forever(self) -> None:
        assert self._finish_wakeup is not None
        while True:
            await self._finish_wakeup.wait()
            self._finish_wakeup.clear()
            while self._finishes:
                batch = self._finishes[:FINISH_BATCH]
                del self._finishes[:FINISH_BATCH]
                await self._write(batch)

    async def _write(self, batch: list[tuple[services.Finish, asyncio.Future[bool]]]) -> None:
        """Write a batch of terminal states, retrying while the database is away."""
        finishes = [finish for finish, _ in batch]
        delay, waited = 0.5, 0.0
        while True:
            try:
                async with self._row_writes:
                    written = await self._db_call(services.finish_jobs, self.worker_id, finishes)
                break
            except DatabaseError as exc:
                if waited >= FINISH_RETRY_SECONDS:
                    logger.error(
                        "%d results could not be written (%s); their leases will lapse and "
                        "the jobs run again",
                        len(batch),
                        type(exc).__name__,
                    )
                    written = [True] * len(batch)  # nothing more to say about each
                    break
                await asyncio.sleep(delay)
                waited += delay
                delay = min(delay * 2, 10.0)
        for (_, answer), ok in zip(batch, written, strict=True):
            if not answer.done():
                answer.set_result(ok)

    async def _start_loop_tasks(self) -> None:
        self._renewer = self._loop.create_task(self._renew_leases_forever())
        self._claim_wakeup = asyncio.Event()
        self._finish_wakeup = asyncio.Event()
        self._batchers = [
            self._loop.create_task(self._claim_forever()),
            self._loop.create_task(self._finish_forever()),
            self._loop.create_task(self._poll_forever()),
            self._loop.create_task(self._stop_cancelled_forever()),
            self._loop.create_task(self._heartbeat_forever()),
            self._loop.create_task(WebhookDeliverer(self._db_call).run_forever()),
        ]
        self._claim_wakeup.set()  # pending jobs may have waited for a worker

    async def _renew_leases_forever(self) -> None:
        interval = max(1.0, settings.GATEWAY_JOB_LEASE_SECONDS / 4)
        while True:
            await asyncio.sleep(interval)
            job_ids = list(self._in_flight)
            if not job_ids:
                continue
            try:
                async with self._row_writes:
                    await self._db_call(services.renew_leases, self.worker_id, job_ids)
            except DatabaseError as exc:
                logger.warning("lease renewal failed: %s", type(exc).__name__)

    async def _heartbeat_forever(self) -> None:
        """Say this engine runs (``/ready`` reads it), now and every HEARTBEAT_SECONDS."""
        while True:
            try:
                await self._db_call(heartbeats.beat, self.worker_id)
            except DatabaseError as exc:
                logger.warning("heartbeat failed: %s", type(exc).__name__)
            await asyncio.sleep(heartbeats.HEARTBEAT_SECONDS)

    async def _stop_cancelled_forever(self) -> None:
        """Stop the calls of jobs cancelled while in flight. A cancelled task writes nothing;
        a finish already queued for one writes nothing either, being conditional on the job
        still ``processing``."""
        while True:
            await asyncio.sleep(CANCEL_CHECK_SECONDS)
            job_ids = list(self._in_flight)
            if not job_ids:
                continue
            try:
                cancelled = await self._db_call(services.cancelled_among, job_ids)
            except DatabaseError as exc:
                logger.warning("checking for cancelled jobs failed: %s", type(exc).__name__)
                continue
            for job_id in cancelled:
                task = self._in_flight.get(job_id)
                if task is not None and not task.done():
                    logger.info("job %s was cancelled: its upstream call is stopped", job_id)
                    task.cancel()

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
        for batcher in self._batchers:
            batcher.cancel()
        with contextlib.suppress(DatabaseError):
            await self._db_call(heartbeats.stop, self.worker_id)
        metrics.forget_this_process()
        await self._transport.close()


_engine: JobEngine | None = None
_engine_closed = False
_engine_lock = threading.Lock()


def start_engine() -> None:
    """Start this process's engine, once; never again after ``shutdown_engine``."""
    global _engine
    with _engine_lock:
        if _engine is None and not _engine_closed:
            _engine = JobEngine().start()


def wake_engine() -> None:
    """Ring this process's engine, if it has one running."""
    engine = _engine
    if engine is not None:
        engine.wake()


def shutdown_engine(grace: float = 30.0) -> None:
    """Drain this process's engine; no new one starts afterwards."""
    global _engine, _engine_closed
    with _engine_lock:
        engine, _engine, _engine_closed = _engine, None, True
    if engine is not None:
        engine.shutdown(grace)
