from __future__ import annotations

import argparse
from datetime import UTC, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from gateway.access.models import MAX_SHARE, MIN_SHARE, BudgetPeriod, VirtualKey


def _budget(budget: str | None, period: str | None) -> dict[str, Any]:
    """The key's budget fields from --budget and --budget-period."""
    if budget is None:
        if period is not None:
            raise CommandError("--budget-period needs --budget")
        return {}
    try:
        usd = Decimal(budget)
    except InvalidOperation:
        usd = Decimal("NaN")
    if not usd.is_finite() or not 0 <= usd < 10**10 or usd != usd.quantize(Decimal("0.0001")):
        raise CommandError("--budget must be a number of USD from 0 to 9999999999.9999")
    return {"budget_usd": usd, "budget_period": period or BudgetPeriod.MONTHLY}


# The key's limits (README, "Limits"); without a flag, no limit of that kind.
_LIMITS = {
    "--requests-per-minute": "Accept at most N submits per clock minute (429 beyond).",
    "--tokens-per-minute": "Refuse submits (429) while the key's jobs that finished this clock "
    "minute used N tokens or more.",
    "--max-pending": "Accept a submit only while fewer than N of the key's jobs are pending "
    "or processing (429 beyond).",
}


_MAX_LIMIT = 2_147_483_647  # what the columns hold


def _positive_integer(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}")
    if number > _MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be at most {_MAX_LIMIT}, got {value!r}")
    return number


def _share(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or not MIN_SHARE <= number <= MAX_SHARE:
        raise argparse.ArgumentTypeError(
            f"must be an integer from {MIN_SHARE} to {MAX_SHARE}, got {value!r}"
        )
    return number


class Command(BaseCommand):
    help = "Create a virtual key. The key is printed once, on the last line; only its hash is kept."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="A unique name for the key.")
        parser.add_argument(
            "--allow-model",
            action="append",
            default=[],
            dest="allowed_models",
            metavar="PATTERN",
            help='A provider/model pattern the key may use (repeatable), e.g. "openai/*". '
            "Without it the key may use any model.",
        )
        for flag, what in _LIMITS.items():
            parser.add_argument(flag, type=_positive_integer, metavar="N", help=what)
        parser.add_argument(
            "--share",
            type=_share,
            default=1,
            metavar="N",
            help=f"The key's weight when the workers are shared between keys with jobs waiting "
            f"({MIN_SHARE} to {MAX_SHARE}, default 1): share 3 gets about three times the "
            "workers of share 1.",
        )
        expiry = parser.add_mutually_exclusive_group()
        expiry.add_argument("--expires-in-days", type=int, help="Expire the key after N days.")
        expiry.add_argument("--expires-at", help="Expire the key at this ISO 8601 time.")
        parser.add_argument("--budget", metavar="USD", help="USD the key may spend per period.")
        parser.add_argument(
            "--budget-period",
            choices=BudgetPeriod.values,
            help="The UTC period the budget is for (default monthly; total: since creation).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"].strip()
        if not name:
            raise CommandError("--name must not be empty")
        longest = VirtualKey._meta.get_field("name").max_length
        if longest is not None and len(name) > longest:
            raise CommandError(f"--name must be at most {longest} characters")
        if VirtualKey.objects.filter(name=name).exists():
            raise CommandError(f"a virtual key named {name!r} already exists")
        expires_at = None
        if options["expires_in_days"] is not None:
            if options["expires_in_days"] < 1:
                raise CommandError("--expires-in-days must be at least 1")
            expires_at = timezone.now() + timedelta(days=options["expires_in_days"])
        elif options["expires_at"]:
            expires_at = parse_datetime(options["expires_at"])
            if expires_at is None:
                raise CommandError("--expires-at must be an ISO 8601 date and time")
            if timezone.is_naive(expires_at):
                expires_at = timezone.make_aware(expires_at, UTC)
        for pattern in options["allowed_models"]:
            if "/" not in pattern:
                raise CommandError(f"--allow-model {pattern!r} must look like provider/model")
        key, raw = VirtualKey.create_with_key(
            name=name,
            allowed_models=options["allowed_models"],
            expires_at=expires_at,
            requests_per_minute=options["requests_per_minute"],
            tokens_per_minute=options["tokens_per_minute"],
            max_pending=options["max_pending"],
            share=options["share"],
            **_budget(options["budget"], options["budget_period"]),
        )
        self.stderr.write(
            f"Created virtual key {key.name!r} ({key.prefix}…). "
            "Store it now; it is not shown again."
        )
        self.stdout.write(raw)
