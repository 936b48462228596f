"""One webhook POST: signed per Standard Webhooks, never redirected, classified.

Success is a 2xx. Timeouts, connection errors, 408, 429, 5xx and 3xx (redirects are never
followed: the registered URL is the one trusted) are tried again later; any other 4xx says the
receiver refuses this notice, so it fails at once. The recorded error holds no secret and at
most a short printable excerpt of the receiver's answer.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import aiohttp
from standardwebhooks import Webhook

from jobs.webhooks.services import Attempt, Outgoing

TIMEOUT = aiohttp.ClientTimeout(total=15, connect=5)
EXCERPT_BYTES = 120
RETRIED_4XX = (408, 429)


def signed_request(outgoing: Outgoing, now: datetime) -> tuple[bytes, dict[str, str]]:
    """The body and the headers of one attempt: ``webhook-id`` is the delivery's id (the
    same on every attempt, so receivers can drop duplicates), the timestamp is the attempt's."""
    body = json.dumps(outgoing.payload, separators=(",", ":"))
    msg_id = str(outgoing.id)
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(outgoing.secret).sign(msg_id, now, body),
        "user-agent": "ai-gateway-webhooks",
    }
    return body.encode(), headers


def _excerpt(raw: bytes) -> str:
    text = raw[:EXCERPT_BYTES].decode("utf-8", "replace")
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()


async def send(session: aiohttp.ClientSession, outgoing: Outgoing) -> Attempt:
    """POST the delivery once and say how it went."""
    body, headers = signed_request(outgoing, datetime.now(UTC))
    try:
        async with session.post(
            outgoing.url, data=body, headers=headers, allow_redirects=False, timeout=TIMEOUT
        ) as response:
            status = response.status
            excerpt = (
                "" if 200 <= status < 300 else _excerpt(await response.content.read(EXCERPT_BYTES))
            )
    except TimeoutError:
        return Attempt(outgoing.id, outgoing.attempt, delivered=False, retry=True, error="timeout")
    except (aiohttp.ClientError, OSError) as exc:
        return Attempt(
            outgoing.id,
            outgoing.attempt,
            delivered=False,
            retry=True,
            error=f"connection error ({type(exc).__name__})",
        )
    if 200 <= status < 300:
        return Attempt(outgoing.id, outgoing.attempt, delivered=True, status_code=status)
    retry = 300 <= status < 400 or status >= 500 or status in RETRIED_4XX
    error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    if excerpt:
        error += f": {excerpt}"
    return Attempt(
        outgoing.id, outgoing.attempt, delivered=False, retry=retry, status_code=status, error=error
    )


async def send_all(session: aiohttp.ClientSession, batch: list[Outgoing]) -> list[Attempt]:
    return list(await asyncio.gather(*(send(session, outgoing) for outgoing in batch)))
