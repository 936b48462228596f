from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from jobs import services


class StatementTimer:
    """An execute wrapper that counts the statements run through it and keeps the longest."""

    def __init__(self) -> None:
        self.count = 0
        self.longest = 0.0

    def __call__(
        self,
        execute: Callable[..., Any],
        sql: str,
        params: Any,
        many: bool,
        context: dict[str, Any],
    ) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.count += 1
            self.longest = max(self.longest, time.perf_counter() - started)


class Command(BaseCommand):
    help = (
        "Delete expired jobs once, in batches, and print what it took; then idempotency keys "
        "past their 24-hour window, in what is left of the time budget. Beat does the same "
        "every minute; run this to clear a backlog or to measure the purge."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            help="Rows per DELETE statement at most (default: GATEWAY_PURGE_BATCH_SIZE).",
        )
        parser.add_argument(
            "--time-budget",
            type=float,
            default=50.0,
            help="Start no new batch after this many seconds (default: 50).",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print one JSON object: rows, seconds, rows_per_s, batches, longest_statement_s "
            "(all of the jobs' purge) and idempotency_keys.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size: int | None = options["batch_size"]
        time_budget: float = options["time_budget"]
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        if not time_budget > 0:
            raise CommandError("--time-budget must be a positive number of seconds")

        connection.ensure_connection()  # time the purge, not the connection handshake
        timer = StatementTimer()
        started = time.perf_counter()
        # The purge runs one statement per batch, so the statements are the batches.
        with connection.execute_wrapper(timer):
            rows = services.purge_expired_jobs(batch_size=batch_size, time_budget=time_budget)
        seconds = time.perf_counter() - started
        keys = services.purge_expired_idempotency_keys(
            batch_size=batch_size, time_budget=max(0.0, time_budget - seconds)
        )
        summary = {
            "rows": rows,
            "seconds": round(seconds, 6),
            "rows_per_s": round(rows / seconds, 1) if seconds > 0 else 0.0,
            "batches": timer.count,
            "longest_statement_s": round(timer.longest, 6),
            "idempotency_keys": keys,
        }
        if options["json"]:
            self.stdout.write(json.dumps(summary))
            return
        statements = "1 statement" if timer.count == 1 else f"{timer.count:,} statements"
        self.stdout.write(
            f"Purged {rows:,} expired jobs in {seconds:.3f} s ({summary['rows_per_s']:,.0f} "
            f"rows/s); {statements}, the longest {timer.longest:.3f} s. Purged {keys:,} "
            "expired idempotency keys."
        )
