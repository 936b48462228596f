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


@shared_task(name="jobs.run_jobs", ignore_result=True)
def run_jobs(job_ids: list[str]) -> None:
    """A bell: jobs are pending. This process's engine claims what fits, oldest first.

    The ids say which submits rang; the engine claims from the table, so a bell that reaches a
    full worker costs nothing and the job is taken by whichever engine has room first.
    """
    try:
        get_engine().wake()
    except EngineClosed:
        # Shutting down: let another worker hear it.
        raise Reject("worker shutting down", requeue=True) from None


@shared_task(name="jobs.run_job", ignore_result=True)
def run_job(job_id: str) -> None:
    """One id per bell, as published before bells carried batches."""
    run_jobs(job_ids=[job_id])


@shared_task(name="jobs.purge_expired_jobs", ignore_result=True)
def purge_expired_jobs() -> int:
    return services.purge_expired_jobs()


@shared_task(name="jobs.redispatch_stale_jobs", ignore_result=True)
def redispatch_stale_jobs() -> dict[str, int]:
    return services.redispatch_stale_jobs()


@worker_shutting_down.connect
def _drain_engine(**kwargs: Any) -> None:
    shutdown_engine()
