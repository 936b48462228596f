"""What a finished job costs, and the ledger it is summed in.

A job is charged by the write of its terminal state and nothing else: ``services.finish_jobs``
prices each result (``charge_for``) before its transaction, writes the cost with the terminal
state, and adds the jobs it wrote to the ledger (``record_charges``) in that same transaction.
A finish that does not write (the job was cancelled, or another worker holds it now) charges
nothing, and a job re-run after its worker died is charged by its one terminal write, so every
job is charged exactly once, whatever crashes.

The model charged is the one that served the job (after fallbacks), priced by
``providers.pricing``; a job without a result (failed, timed out, cancelled) is not charged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, router, transaction
from django.db.models import F

from gateway.access.models import KeySpend
from jobs.token_usage import token_usage
from providers.pricing import price_usage


@dataclass(frozen=True)
class Charge:
    """One finished job's usage and cost."""

    virtual_key_id: int | None
    model: str  # "provider/model" that served it
    cost_usd: Decimal
    priced: bool
    prompt_tokens: int
    completion_tokens: int


def charge_for(
    result: dict[str, Any] | None, served_by: str | None, virtual_key_id: int | None
) -> Charge | None:
    """The charge for a job that ended with ``result``, served by ``served_by``; None when
    there is nothing to charge (no result)."""
    if result is None or served_by is None:
        return None
    prompt_tokens, completion_tokens = token_usage(result)
    provider, _, model = served_by.partition("/")
    price = price_usage(provider, model, prompt_tokens, completion_tokens)
    return Charge(
        virtual_key_id=virtual_key_id,
        model=served_by,
        cost_usd=price.cost_usd,
        priced=price.priced,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )


def charged_fields(charge: Charge | None) -> dict[str, Any]:
    """The job's cost columns as its terminal write sets them."""
    if charge is None:
        return {"cost_usd": None, "unpriced": False}
    return {"cost_usd": charge.cost_usd, "unpriced": not charge.priced}


@dataclass
class _Sum:
    spend_usd: Decimal = Decimal(0)
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    unpriced_requests: int = 0


def record_charges(finished_at: datetime, charges: Iterable[Charge]) -> None:
    """Add jobs finished at ``finished_at`` to the ledger, in the caller's transaction.

    One UPDATE per (key, model) of the batch, rows taken in one order so that two workers'
    batches never deadlock; a row not there yet is inserted under a savepoint, and when another
    transaction inserted it first, updated. Jobs of an admin token (no key) have no ledger row.
    """
    day = finished_at.astimezone(UTC).date()
    sums: dict[tuple[int, str], _Sum] = {}
    for charge in charges:
        if charge.virtual_key_id is None:
            continue
        total = sums.setdefault((charge.virtual_key_id, charge.model), _Sum())
        total.spend_usd += charge.cost_usd
        total.requests += 1
        total.prompt_tokens += charge.prompt_tokens
        total.completion_tokens += charge.completion_tokens
        total.unpriced_requests += 0 if charge.priced else 1
    for (key_id, model), total in sorted(sums.items()):
        _add(key_id, day, model, total)


def _add(key_id: int, day: date, model: str, total: _Sum) -> None:
    row = KeySpend.objects.filter(virtual_key_id=key_id, day=day, model=model)
    increments = {
        "spend_usd": F("spend_usd") + total.spend_usd,
        "requests": F("requests") + total.requests,
        "prompt_tokens": F("prompt_tokens") + total.prompt_tokens,
        "completion_tokens": F("completion_tokens") + total.completion_tokens,
        "unpriced_requests": F("unpriced_requests") + total.unpriced_requests,
    }
    if row.update(**increments):
        return
    try:
        with transaction.atomic(using=router.db_for_write(KeySpend)):
            KeySpend.objects.create(virtual_key_id=key_id, day=day, model=model, **total.__dict__)
    except IntegrityError:
        row.update(**increments)  # another batch inserted it and has committed since
