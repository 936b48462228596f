"""Celery tasks of the gateway app; beat runs them (gateway/celery.py)."""

from __future__ import annotations

from celery import shared_task

from gateway.access import revocation


@shared_task(name="gateway.purge_expired_revocations", ignore_result=True)
def purge_expired_revocations() -> int:
    return revocation.purge_expired_revocations()
