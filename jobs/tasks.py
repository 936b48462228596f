"""Celery tasks. Each takes ids or nothing and calls a service; none holds a transaction."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.exceptions import Reject
from celery.signals import worker_shutting_down

from jobs import services
from jobs.engine import EngineClosed, get_engine, shutdown_engine

logger = logging.getLogger(__name__)


@shared_task(name="jobs.run_job", acks_late=True, ignore_result=True)
def run_job(job_id: str) -> bool:
    """Hand the job to this process's engine; acknowledged once the row is claimed (or taken)."""
    try:
        return get_engine().run(job_id)
    except EngineClosed:
        # Shutting down: back to the queue for another worker, the try not counted.
        raise Reject("worker shutting down", requeue=True) from None


@shared_task(name="jobs.purge_expired_jobs", ignore_result=True)
def purge_expired_jobs() -> int:
    return services.purge_expired_jobs()


@shared_task(name="jobs.redispatch_stale_jobs", ignore_result=True)
def redispatch_stale_jobs() -> dict[str, int]:
    return services.redispatch_stale_jobs()


@worker_shutting_down.connect
def _drain_engine(**kwargs: Any) -> None:
    shutdown_engine()
