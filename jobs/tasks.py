"""Celery's part: the bell, beat's tasks, and the worker signals that run this process's engine.

Tasks take nothing they need and call a service or the engine; none holds a transaction. The
engine starts with the worker process, before the worker reaches the broker, so a worker
started while the broker is down claims pending jobs all the same. The web process and beat
import this module too: neither receives a worker signal, so neither ever starts an engine.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.concurrency import get_implementation
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutting_down,
)

from jobs import heartbeats, services
from jobs.dispatch import BELL
from jobs.engine import shutdown_engine, start_engine, wake_engine


@shared_task(name=BELL, ignore_result=True)
def run_jobs(*_args: Any, **_kwargs: Any) -> None:
    """A bell: pending jobs are waiting; this process's engine claims what fits, fairly per key.

    A bell names no job (``jobs.dispatch`` says why). Bells queued by older web processes carry
    ``job_ids``: they mean the same and are accepted. A bell that reaches a worker shutting down
    is dropped; its jobs are rows that the other engines find on their next look.
    """
    wake_engine()


@shared_task(name="jobs.purge_expired_jobs", ignore_result=True)
def purge_expired_jobs() -> int:
    """Expired jobs, then idempotency keys past their window and the heartbeats of engines
    that died; answers the jobs purged."""
    purged = services.purge_expired_jobs()
    services.purge_expired_idempotency_keys(time_budget=5.0)
    heartbeats.purge_stale()
    return purged


@shared_task(name="jobs.redispatch_stale_jobs", ignore_result=True)
def redispatch_stale_jobs() -> dict[str, int]:
    return services.redispatch_stale_jobs()


@worker_init.connect
def _start_engine_with_the_worker(sender: Any, **kwargs: Any) -> None:
    """The threads and solo pools run tasks in the worker's own process: its engine starts here.

    A prefork worker's children start one each (``worker_process_init``); the parent runs no
    task, and a process that forks must not hold a running engine.
    """
    if not issubclass(get_implementation(sender.pool_cls), PreforkPool):
        start_engine()


@worker_process_init.connect
def _start_engine_in_a_pool_process(**kwargs: Any) -> None:
    """Sent in each prefork child as it starts, and by the solo pool in the worker itself."""
    start_engine()


@worker_shutting_down.connect  # the worker's own process: threads and solo pools
@worker_process_shutdown.connect  # each prefork child, as it exits
def _drain_engine(**kwargs: Any) -> None:
    shutdown_engine()
