"""What every scenario does around its fault: submit, watch jobs finish, poll them all at the end.

``observe`` runs a scenario's load (and its faults) while polling each job the table shows
finished, waits for the rest until a deadline, then polls every accepted job once more and reads
the job table, so the ledger can count lost and duplicated jobs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drill.client import DrillClient
from drill.ledger import SPEND_TABLE, Ledger
from drill.private_services import PrivatePostgres, PrivateRedis
from harness.procs import tree_rss_bytes
from harness.stack import Stack, StackConfig

Log = Callable[[str], None]
Load = Callable[[DrillClient, Ledger], Awaitable[None]]
MODEL = "openai/gpt-drill"
# Its price (set_model_price), so that every completed job is charged and the ledger can show
# that none was charged twice.
DRILL_PRICE = ("--input-per-million", "1", "--output-per-million", "2")
SETTLE_SECONDS = 2.0  # between the last job seen finished and the final poll
PROGRESS_SECONDS = 5.0

# Production defaults in brackets. A dead worker's jobs are re-queued once their lease lapses
# (10 s [60 s]) at beat's next look (every 15 s), and a hanging upstream fails a call after 8 s
# [120 s]; the drill's normal upstream answers within 3 s.
DRILL_SETTINGS = {
    "GATEWAY_JOB_LEASE_SECONDS": "10",
    "GATEWAY_UPSTREAM_TIMEOUT": "8",
    "GATEWAY_UPSTREAM_CONNECT_TIMEOUT": "2",
}


def drill_config(
    database_url: str, redis_url: str, var_dir: Path, upstream_url: str
) -> StackConfig:
    """Web (granian), two workers and beat on the drill's own Postgres and Redis."""
    return StackConfig(
        database_url=database_url,
        var_dir=var_dir,
        queue="drill",
        broker_url=redis_url,
        upstream_url=upstream_url,
        workers=2,
        settings={**DRILL_SETTINGS, "GATEWAY_WORKER_MAX_IN_FLIGHT": "4096", "GATEWAY_RETRIES": "0"},
    )


@dataclass
class Drill:
    """Everything a scenario may start, stop or read."""

    stack: Stack
    postgres: PrivatePostgres
    redis: PrivateRedis
    log: Log
    tag: str  # this run's prefix for submit markers

    def client(self) -> DrillClient:
        return DrillClient(self.stack, self.log)

    def clear_jobs(self) -> None:
        """Empty the job table and the keys' spend ledger, so a scenario's counts are its own."""
        self.stack.truncate()
        self.stack.query(f"TRUNCATE {SPEND_TABLE}")

    def marker(self, scenario: str) -> str:
        return f"{self.tag}-{scenario}"

    def restore(self) -> None:
        """Start whatever a failed scenario left stopped, so the next one finds a whole stack."""
        procs = self.stack.procs
        if not procs.alive(self.postgres.name):
            self.postgres.start()
        if not procs.alive(self.redis.name):
            self.redis.start()
        if not procs.alive("web"):
            self.stack.start_web()
        for n in range(self.stack.config.workers):
            if not procs.alive(f"worker-{n}"):
                self.stack.start_worker(n)

    def rss(self, prefix: str) -> int:
        return tree_rss_bytes(self.stack.procs.pids(prefix))


async def _report_progress(ledger: Ledger, label: str, log: Log) -> None:
    started = time.monotonic()
    while True:
        await asyncio.sleep(PROGRESS_SECONDS)
        answered = [s for s in ledger.submissions.values() if s.status is not None]
        accepted = sum(1 for s in answered if s.accepted)
        log(
            f"  {label} {time.monotonic() - started:5.0f}s: answered {len(answered):,}, "
            f"accepted {accepted:,}, refused {len(answered) - accepted:,}, "
            f"finished {len(ledger.first_terminal):,}"
        )


async def at(seconds: float, action: Callable[[], Any], log: Log, what: str) -> float:
    """Run the blocking ``action`` ``seconds`` from now (in a thread); when it ended."""
    await asyncio.sleep(seconds)
    log(f"  fault: {what}")
    await asyncio.to_thread(action)
    return time.time()


async def observe(drill: Drill, label: str, load: Load, deadline_seconds: float) -> Ledger:
    """Run ``load``, then wait until its accepted jobs finished (or the deadline), poll them all.

    The deadline counts from the end of ``load``, which includes its faults.
    """
    ledger = Ledger()
    async with drill.client() as client:
        watcher = asyncio.create_task(client.watch(ledger))
        progress = asyncio.create_task(_report_progress(ledger, label, drill.log))
        try:
            await load(client, ledger)
            drill.log(f"  {label}: load done; waiting up to {deadline_seconds:g} s for the jobs")
            await client.wait_seen(ledger, time.monotonic() + deadline_seconds, label)
        finally:
            watcher.cancel()
            progress.cancel()
        await asyncio.sleep(SETTLE_SECONDS)
        await client.final_poll(ledger)
        ledger.table_rows(await client.table_rows())
        ledger.charges(*await client.charges())
    return ledger


def verdict(summary: dict[str, Any], extra_ok: bool, extra: str) -> dict[str, Any]:
    """A scenario's figures with its pass/fail: 0 lost, 0 duplicated, every completed job charged
    once, and its own condition."""
    charged_once = summary["charged_twice"] == 0 and summary["completed_uncharged"] == 0
    return {
        **summary,
        "extra_condition": extra,
        "extra_ok": extra_ok,
        "passed": summary["lost"] == 0 and summary["duplicated"] == 0 and charged_once and extra_ok,
    }
