"""Writes for webhooks: endpoints, a job's delivery, making deliveries due, claiming them and
recording each attempt. The admin, the command, the submit, the engine's finish and the delivery
loop all go through these functions; every state change is a conditional UPDATE.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.db import router, transaction
from django.db.models import F, Q
from django.utils import timezone

from gateway.access.models import VirtualKey
from jobs import sql
from jobs.models import AsyncJob
from jobs.serializers import AsyncJobSerializer, rfc3339
from jobs.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
SECRET_BYTES = 32
LEASE = timedelta(seconds=60)  # a claimed delivery is due again when its worker is gone this long
RETRY_FOR = timedelta(hours=24)  # transient failures are retried at least this long
DELIVERED_KEPT = timedelta(days=7)  # finished deliveries are purged after this


class InvalidWebhookUrl(ValueError):
    """The URL is not an absolute http(s) URL."""


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidWebhookUrl(f"{url!r} is not an http:// or https:// URL")
    return url


def create_endpoint(
    *, name: str, url: str, virtual_key: VirtualKey | None = None
) -> tuple[WebhookEndpoint, str]:
    """A new active endpoint and its signing secret (the only time the plaintext is returned)."""
    endpoint = WebhookEndpoint(name=name, url=check_url(url), virtual_key=virtual_key)
    secret = new_secret()
    endpoint.set_secret(secret)
    endpoint.save()
    return endpoint, secret


def add_delivery(job: AsyncJob, endpoint: WebhookEndpoint) -> None:
    """The job's notice, waiting for the job to end (written in the submit's transaction)."""
    WebhookDelivery.objects.create(job=job, endpoint=endpoint)


def enqueue_deliveries(job_ids: Iterable[Any]) -> int:
    """Make the notices of these jobs, which have just reached a terminal state, due now.

    Call it in the transaction that writes the terminal states, so the notice and the state are
    committed together. One UPDATE; jobs without a webhook have no row and cost nothing more.
    """
    ids = list(job_ids)
    if not ids:
        return 0
    now = timezone.now()
    return WebhookDelivery.objects.filter(job_id__in=ids, status=DeliveryStatus.WAITING).update(
        status=DeliveryStatus.PENDING, due_since=now, next_attempt_at=now
    )


@dataclass(frozen=True)
class Outgoing:
    """A claimed delivery, ready to send; ``secret`` lives only in memory."""

    id: uuid.UUID
    attempt: int
    url: str
    secret: str
    payload: dict[str, Any]


def claim_due_deliveries(limit: int) -> list[Outgoing]:
    """Claim up to ``limit`` due deliveries under a lease: those whose next attempt is due and
    those whose claim lapsed (their worker died). ``SKIP LOCKED`` on Postgres; SQLite's one
    writer (``BEGIN IMMEDIATE``) makes the plain select-then-update exclusive."""
    now = timezone.now()
    due = Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now) | Q(
        status=DeliveryStatus.SENDING, lease_expires_at__lt=now
    )
    with transaction.atomic(using=router.db_for_write(WebhookDelivery)):
        ids = list(
            WebhookDelivery.objects.filter(due)
            .order_by("next_attempt_at")
            .select_for_update(skip_locked=True)
            .values_list("id", flat=True)[:limit]
        )
        if not ids:
            return []
        WebhookDelivery.objects.filter(pk__in=ids).update(
            status=DeliveryStatus.SENDING,
            lease_expires_at=now + LEASE,
            attempts=F("attempts") + 1,
            last_attempt_at=now,
        )
        claimed = list(WebhookDelivery.objects.filter(pk__in=ids).select_related("endpoint"))
        outgoing = []
        for delivery in claimed:
            ready = _outgoing(delivery, now)
            if ready is not None:
                outgoing.append(ready)
    return outgoing


def _outgoing(delivery: WebhookDelivery, now: datetime) -> Outgoing | None:
    """What to send, building (and keeping) the body at the first attempt; None, with the
    delivery failed, when it cannot be sent."""
    endpoint = delivery.endpoint
    secret = endpoint.get_secret() if endpoint.is_active else None
    if delivery.payload is None:
        job = sql.read_polled_job(delivery.job_id)
        if job is None:
            _give_up(delivery, "the job was purged before its notice was built")
            return None
        delivery.event_type = f"async_job.{job.status}"
        delivery.payload = {
            "type": delivery.event_type,
            "timestamp": rfc3339(job.completed_at or now),
            "data": {**AsyncJobSerializer.render(job), "request_type": job.request_type},
        }
        delivery.save(update_fields=["event_type", "payload"])
    if not endpoint.is_active or secret is None:
        reason = "the endpoint is inactive" if not endpoint.is_active else "undecryptable secret"
        _give_up(delivery, reason)
        return None
    return Outgoing(delivery.id, delivery.attempts, endpoint.url, secret, delivery.payload)


def _give_up(delivery: WebhookDelivery, reason: str) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.FAILED, last_error=reason, lease_expires_at=None
    )


@dataclass(frozen=True)
class Attempt:
    """How one POST went: delivered, or the error and whether to try again."""

    delivery_id: uuid.UUID
    attempt: int
    delivered: bool
    retry: bool = False
    status_code: int | None = None
    error: str = ""


def backoff(attempt: int, jitter: float) -> timedelta:
    """The wait after failed attempt ``attempt`` (1, 2, …): 5 s doubling up to an hour, times
    ``jitter`` (0.5 to 1) so receivers coming back are not hit by every retry at once."""
    return timedelta(seconds=min(5 * 2 ** (attempt - 1), 3600) * jitter)


def record_attempts(attempts: list[Attempt], jitter: float = 1.0) -> None:
    """Write each attempt's outcome, if the delivery is still this attempt's (a lapsed lease
    may have given it to another worker, whose attempt then counts)."""
    now = timezone.now()
    for attempt in attempts:
        values: dict[str, Any] = {
            "last_status_code": attempt.status_code,
            "last_error": attempt.error[:300],
            "lease_expires_at": None,
        }
        held = WebhookDelivery.objects.filter(
            pk=attempt.delivery_id, status=DeliveryStatus.SENDING, attempts=attempt.attempt
        )
        if attempt.delivered:
            values.update(status=DeliveryStatus.DELIVERED, delivered_at=now)
        elif attempt.retry:
            first = held.values_list("due_since", flat=True).first() or now
            if now - first >= RETRY_FOR:
                values.update(status=DeliveryStatus.FAILED)
            else:
                wait = backoff(attempt.attempt, jitter)
                values.update(status=DeliveryStatus.PENDING, next_attempt_at=now + wait)
        else:
            values.update(status=DeliveryStatus.FAILED)
        held.update(**values)


def resend_deliveries(delivery_ids: Iterable[Any]) -> int:
    """Make these deliveries due now, whatever became of them (the admin's re-send): a
    delivery whose job has not ended stays waiting."""
    now = timezone.now()
    return (
        WebhookDelivery.objects.filter(pk__in=list(delivery_ids))
        .exclude(status=DeliveryStatus.WAITING)
        .update(
            status=DeliveryStatus.PENDING,
            next_attempt_at=now,
            due_since=now,
            lease_expires_at=None,
        )
    )


def purge_finished_deliveries() -> int:
    """Delete deliveries delivered or failed more than DELIVERED_KEPT ago."""
    cutoff = timezone.now() - DELIVERED_KEPT
    finished = Q(status=DeliveryStatus.DELIVERED) | Q(status=DeliveryStatus.FAILED)
    deleted, _ = WebhookDelivery.objects.filter(finished, last_attempt_at__lt=cutoff).delete()
    return deleted
