"""The 402 at submit for a key that has spent its budget for the period.

The submit's gated INSERT checks the budget in the same statement as the limits
(``jobs/limits.py``); when it refuses, this reads the spend again to tell a spent budget (402)
from a limit (429)."""

from __future__ import annotations

from django.utils import timezone

from gateway.access.budgets import first_ledger_day, period_start, refusal
from gateway.access.principals import Principal
from jobs import sql


def ensure_within_budget(principal: Principal) -> None:
    """Raise BudgetExceeded (402) when the caller's key has spent its budget for the period.

    A key without a budget (or an admin token) costs nothing here: the budget comes with the
    key the request authenticated with (cached per process like the key), and only a key with
    one reads the ledger, in one statement (``sql.spent_since``).
    """
    key = principal.virtual_key
    if key is None or key.budget_usd is None:
        return
    start = period_start(key.budget_period, timezone.now(), key.created_at)
    spent = sql.spent_since(key.pk, first_ledger_day(key.budget_period, start))
    if spent >= key.budget_usd:
        raise refusal(key, spent, start)
