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
from typing import Any

from bench.procs import tree_rss_bytes
from drill.client import DrillClient
from drill.ledger import Ledger
from drill.private_services import PrivatePostgres, PrivateRedis
from drill.stack import DrillStack

Log = Callable[[str], None]
Load = Callable[[DrillClient, Ledger], Awaitable[None]]
MODEL = "openai/gpt-drill"
SETTLE_SECONDS = 2.0  # between the last job seen finished and the final poll
PROGRESS_SECONDS = 5.0


@dataclass
class Drill:
    """Everything a scenario may start, stop or read."""

    stack: DrillStack
    postgres: PrivatePostgres
    redis: PrivateRedis
    log: Log
    tag: str  # this run's prefix for submit markers

    def client(self) -> DrillClient:
        return DrillClient(
            self.stack.web_url, self.stack.key, self.stack.config.database_url, self.log
        )

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
        subs = ledger.submissions.values()
        answered = [s for s in subs if s.status is not None]
        accepted = sum(1 for s in answered if s.accepted)
        log(
            f"  {label} {time.monotonic() - started:5.0f}s: submitted {len(subs):,}, "
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
    return ledger


def verdict(summary: dict[str, Any], extra_ok: bool, extra: str) -> dict[str, Any]:
    """A scenario's figures with its pass/fail: 0 lost, 0 duplicated, and its own condition."""
    return {
        **summary,
        "extra_condition": extra,
        "extra_ok": extra_ok,
        "passed": summary["lost"] == 0 and summary["duplicated"] == 0 and extra_ok,
    }
