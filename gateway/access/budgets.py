"""Budgets: which period a key's spend counts in, what it has spent there, and the 402 at submit.

A key's budget (``VirtualKey.budget_usd``) is spent over a UTC calendar period: the day, the ISO
week (from Monday), the calendar month, or ``total`` (since the key was created). The spend is
read from the ledger (``KeySpend``, one row per key, UTC day and served model), which is written
when jobs finish, so a submit is refused once the jobs already finished have spent the budget;
jobs still running when it is reached are charged as they finish.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.db.models import Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from gateway.access.models import BudgetPeriod, KeySpend, VirtualKey
from gateway.access.principals import Principal
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


def _first_day(period: str, start: datetime) -> date | None:
    """The first ledger day a period counts; None for ``total``, which counts every day."""
    return None if period == BudgetPeriod.TOTAL else start.date()


def spent_since(key_id: int, first_day: date | None) -> Decimal:
    """What the key spent on the days from ``first_day`` on (every day when None): one
    aggregate over the ledger's (key, day, model) index."""
    rows = KeySpend.objects.filter(virtual_key_id=key_id)
    if first_day is not None:
        rows = rows.filter(day__gte=first_day)
    total: Decimal = rows.aggregate(spent=Coalesce(Sum("spend_usd"), ZERO))["spent"]
    return total


def ensure_within_budget(principal: Principal) -> None:
    """Raise BudgetExceeded (402) when the caller's key has spent its budget for the period.

    A key without a budget (or an admin token) costs nothing here: the budget comes with the
    key the request authenticated with, and only a key with one reads the ledger.
    """
    key = principal.virtual_key
    if key is None or key.budget_usd is None:
        return
    start = period_start(key.budget_period, timezone.now(), key.created_at)
    spent = spent_since(key.pk, _first_day(key.budget_period, start))
    if spent >= key.budget_usd:
        raise BudgetExceeded(
            f"The key's budget of {money(key.budget_usd)} USD for the {key.budget_period} "
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
    first_day = _first_day(period, start)
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
