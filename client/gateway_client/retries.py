"""How long the client waits: between polls, after a 429 or an unavailable gateway, in all."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx


@dataclass(frozen=True)
class Backoff:
    """Exponential: ``first``, then times ``factor`` each time, never above ``cap`` seconds."""

    first: float
    factor: float
    cap: float

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.first * self.factor**attempt)


@dataclass(frozen=True)
class RetryPolicy:
    # Between polls of an unfinished job whose answer has no Retry-After.
    poll: Backoff = field(default_factory=lambda: Backoff(first=0.25, factor=2.0, cap=5.0))
    # After a 429 (or, for a request safe to repeat, a 502/503/504 or a broken connection)
    # that has no Retry-After.
    throttled: Backoff = field(default_factory=lambda: Backoff(first=1.0, factor=2.0, cap=30.0))
    # The longest Retry-After obeyed as given; a longer one is cut to this.
    max_retry_after: float = 60.0
    # Retries of one request outside a wait (submit, get, cancel); a wait retries until its
    # timeout instead.
    max_retries: int = 5


def retry_after(response: httpx.Response) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), if any."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class Clock:
    """Time as the client reads and spends it; a test passes one that only pretends to sleep."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    async def sleep_async(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
