"""Budgets: which period a key's spend counts in, what it has spent there, and the 402 at submit.

A key's budget (``VirtualKey.budget_usd``) is spent over a UTC calendar period: the day, the ISO
week (from Monday), the calendar month, or ``total`` (since the key was created). The spend is
read from the ledger (``KeySpend``, one row per key, UTC day and served model), which is written
when jobs finish, so a submit is refused once the jobs already finished have spent the budget
(the sum is part of the submit's gated INSERT, ``jobs/limits.py``; the 402 itself comes from
``jobs.budget.ensure_within_budget``); jobs still running when it is reached are charged as
they finish.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from gateway.access.models import BudgetPeriod, KeySpend, VirtualKey
from gateway.http.errors import GatewayError

ZERO = Decimal(0)


class BudgetExceeded(GatewayError):
    status_code = 402
    error_type = "insufficient_quota"
    code = "budget_exceeded"


def period_start(period: str, now: datetime, created_at: datetime) -> datetime:
    """The UTC start of the budget period ``now`` falls in (``total``: the key's creation)."""
    now = now.astimezone(UTC)
    day = datetime(now.year, now.month, now.day, tzinfo=UTC)
    if period == BudgetPeriod.DAILY:
        return day
    if period == BudgetPeriod.WEEKLY:
        return day - timedelta(days=now.weekday())
    if period == BudgetPeriod.MONTHLY:
        return day.replace(day=1)
    if period == BudgetPeriod.TOTAL:
        return created_at.astimezone(UTC)
    raise ValueError(f"unknown budget period {period!r}")


def first_ledger_day(period: str, start: datetime) -> date | None:
    """The first ledger day a period counts; None for ``total``, which counts every day."""
    return None if period == BudgetPeriod.TOTAL else start.date()


def refusal(key: VirtualKey, spent: Decimal, start: datetime) -> BudgetExceeded:
    return BudgetExceeded(
        f"The key's budget of {money(key.budget_usd or ZERO)} USD for the {key.budget_period} "
        f"period starting {start:%Y-%m-%d} has been spent ({money(spent)} USD).",
    )


@dataclass
class Spend:
    """Spend and usage summed over ledger rows."""

    spend_usd: Decimal = ZERO
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    unpriced_requests: int = 0

    def add(self, row: KeySpend) -> None:
        self.spend_usd += row.spend_usd
        self.requests += row.requests
        self.prompt_tokens += row.prompt_tokens
        self.completion_tokens += row.completion_tokens
        self.unpriced_requests += row.unpriced_requests


@dataclass
class Usage:
    """A key's spend in its current budget period, in all and per served model."""

    key: VirtualKey
    period: str
    period_start: datetime
    total: Spend
    models: dict[str, Spend] = field(default_factory=dict)


def key_usage(key: VirtualKey, now: datetime | None = None) -> Usage:
    """The key's usage in its current budget period; ``total`` when it has no budget."""
    period = key.budget_period if key.budget_usd is not None else BudgetPeriod.TOTAL
    start = period_start(period, now or timezone.now(), key.created_at)
    rows = KeySpend.objects.filter(virtual_key=key)
    first_day = first_ledger_day(period, start)
    if first_day is not None:
        rows = rows.filter(day__gte=first_day)
    usage = Usage(key=key, period=period, period_start=start, total=Spend())
    for row in rows.order_by("model", "day"):
        usage.total.add(row)
        usage.models.setdefault(row.model, Spend()).add(row)
    return usage


def money(value: Decimal) -> str:
    """USD as the API writes it: a decimal string, without trailing zeros or an exponent."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text
