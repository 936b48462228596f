"""The worker's webhook delivery loop: a task on the job engine's asyncio loop.

Every POLL_SECONDS it claims due deliveries (``services.claim_due_deliveries``, under a lease),
sends them at once with aiohttp, and records each attempt. The rows are the queue: a worker
killed mid-send leaves its claims to lapse, and any worker's loop then sends them again (at
least once; receivers drop duplicates by ``webhook-id``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from django.db import DatabaseError

from jobs import metrics
from jobs.webhooks import sending, services

logger = logging.getLogger(__name__)
T = TypeVar("T")

POLL_SECONDS = 1.0
CLAIM_BATCH = 50
PURGE_EVERY_SECONDS = 3600.0

DbCall = Callable[..., Awaitable[Any]]


class WebhookDeliverer:
    """Claims, sends and records deliveries until cancelled; ``db_call`` runs a blocking
    function on a database thread."""

    def __init__(self, db_call: DbCall) -> None:
        self._db_call = db_call
        self._last_purge = 0.0

    async def run_forever(self) -> None:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CLAIM_BATCH), trust_env=False
        ) as session:
            while True:
                try:
                    sent = await self.deliver_due(session)
                    await self._purge_now_and_then()
                except DatabaseError as exc:
                    logger.warning("webhook deliveries: database error %s", type(exc).__name__)
                    sent = 0
                if sent < CLAIM_BATCH:
                    await asyncio.sleep(POLL_SECONDS)

    async def deliver_due(self, session: aiohttp.ClientSession) -> int:
        """One round: claim what is due, send it, record how each went; how many were sent."""
        batch = await self._db_call(services.claim_due_deliveries, CLAIM_BATCH)
        if not batch:
            return 0
        attempts = await sending.send_all(session, batch)
        for attempt in attempts:
            outcome = "delivered" if attempt.delivered else "retry" if attempt.retry else "rejected"
            metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
            if not attempt.delivered:
                logger.info(
                    "webhook %s attempt %d: %s", attempt.delivery_id, attempt.attempt, attempt.error
                )
        await self._db_call(services.record_attempts, attempts, random.uniform(0.5, 1.0))
        return len(batch)

    async def _purge_now_and_then(self) -> None:
        if time.monotonic() - self._last_purge >= PURGE_EVERY_SECONDS:
            self._last_purge = time.monotonic()
            await self._db_call(services.purge_finished_deliveries)
