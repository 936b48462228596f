"""The drill's webhook receiver, and what it counts: every notice that arrived, verified.

The receiver checks each POST's Standard Webhooks signature with the endpoint's secret and
records its ``webhook-id`` (the delivery's id, the same on every attempt) and, when the
signature holds, the job it names. Until ``release()`` it holds every answer back: a slow
receiver, so the gateway's sends are in flight when the drill kills the worker that made them.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

PATH = "/hooks"


@dataclass(frozen=True)
class Arrival:
    """One POST: its ``webhook-id``, the job a verified body names (None: not verified)."""

    webhook_id: str
    job_id: str | None
    at: float  # time.monotonic()


@dataclass
class Arrivals:
    """Every POST the receiver got, in order of arrival."""

    arrivals: list[Arrival] = field(default_factory=list)

    def add(self, webhook_id: str, job_id: str | None, at: float) -> None:
        self.arrivals.append(Arrival(webhook_id, job_id, at))

    def _verified_by_job(self) -> dict[str, list[Arrival]]:
        by_job: dict[str, list[Arrival]] = defaultdict(list)
        for arrival in self.arrivals:
            if arrival.job_id is not None:
                by_job[arrival.job_id].append(arrival)
        return by_job

    def unnotified(self, job_ids: list[str]) -> list[str]:
        """The jobs no verified notice has named yet."""
        by_job = self._verified_by_job()
        return [job_id for job_id in job_ids if job_id not in by_job]

    def arrived_again(self, webhook_ids: list[str], after: float) -> int:
        """How many of these ``webhook-id``s arrived (again) at or after ``after``."""
        later = {a.webhook_id for a in self.arrivals if a.at >= after}
        return sum(1 for webhook_id in set(webhook_ids) if webhook_id in later)

    def summary(self, job_ids: list[str]) -> dict[str, Any]:
        """The notices of these (accepted) jobs: at least once each, duplicates counted."""
        by_job = self._verified_by_job()
        accepted = set(job_ids)
        unnotified = self.unnotified(job_ids)
        verified = sum(len(arrivals) for arrivals in by_job.values())
        return {
            "received": len(self.arrivals),
            "invalid_signatures": len(self.arrivals) - verified,
            "jobs_notified": len(job_ids) - len(unnotified),
            "unnotified": len(unnotified),
            "unnotified_ids": unnotified[:20],
            "duplicates": sum(len(arrivals) - 1 for arrivals in by_job.values()),
            "jobs_notified_more_than_once": sum(1 for a in by_job.values() if len(a) > 1),
            "jobs_with_several_webhook_ids": sum(
                1 for arrivals in by_job.values() if len({a.webhook_id for a in arrivals}) > 1
            ),
            "notices_of_unknown_jobs": sum(
                len(arrivals) for job_id, arrivals in by_job.items() if job_id not in accepted
            ),
        }


class WebhookReceiver:
    """An aiohttp server on ``127.0.0.1:port``, on the running loop; use as ``async with``.

    Answers 200 to a verified notice and 400 to any other POST, but only once released.
    """

    def __init__(self, secret: str, port: int) -> None:
        self.port = port
        self.arrivals = Arrivals()
        self._webhook = Webhook(secret)
        self._released = asyncio.Event()
        self._held: list[str] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def held(self) -> list[str]:
        """The ``webhook-id``s of the POSTs waiting for their answer now."""
        return list(self._held)

    def release(self) -> None:
        """Answer what is held, and every later POST at once."""
        self._released.set()

    def _verified_job(self, body: bytes, headers: dict[str, str]) -> str | None:
        try:
            payload = self._webhook.verify(body, headers)
            return str(payload["data"]["id"])
        except (WebhookVerificationError, KeyError, TypeError, ValueError):
            return None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        webhook_id = request.headers.get("webhook-id", "")
        job_id = self._verified_job(body, dict(request.headers))
        self.arrivals.add(webhook_id, job_id, time.monotonic())
        self._held.append(webhook_id)
        try:
            await self._released.wait()
        finally:
            self._held.remove(webhook_id)
        return web.Response(status=200 if job_id is not None else 400)

    async def __aenter__(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post(PATH, self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
