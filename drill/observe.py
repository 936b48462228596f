"""What every scenario does around its fault: submit, watch jobs finish, poll them all at the end.

``observe`` runs a scenario's load (and its faults) through a ``Client``, which submits with the
harness's load shapes and records each submit's own answer in a ``Ledger`` (which submit got
which job id, or which refusal: what lost and duplicated jobs are counted from). Meanwhile it
polls each job the table shows finished; after the load it waits for the rest until a deadline,
polls every accepted job once more and reads the job table and the spend ledger.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from drill.ledger import COUNTERS_TABLE, SPEND_TABLE, Ledger, Observation, is_error_shape
from drill.private_services import PrivatePostgres, PrivateRedis
from harness.load import closed_loop, open_loop
from harness.procs import tree_rss_bytes
from harness.runs import Log
from harness.stack import JOBS_TABLE, Stack, StackConfig

MODEL = "openai/gpt-drill"
# Its price (set_model_price), so that every completed job is charged and the ledger can show
# that none was charged twice.
DRILL_PRICE = ("--input-per-million", "1", "--output-per-million", "2")
SUBMIT_PATH = "/v1/async/completions"
SETTLE_SECONDS = 2.0  # between the last job seen finished and the final poll
PROGRESS_SECONDS = 5.0
POLL_CONNECTIONS = 16
FINAL_POLL_TRIES = 10

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


def submit_body(marker: str, model: str) -> bytes:
    return json.dumps({"model": model, "prompt": marker, "max_tokens": 16}).encode()


@dataclass
class Drill:
    """Everything a scenario may start, stop or read."""

    stack: Stack
    postgres: PrivatePostgres
    redis: PrivateRedis
    log: Log
    tag: str  # this run's prefix for submit markers

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

    async def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a query in a thread; none while the database is away."""
        return await asyncio.to_thread(self.stack.query, sql, params, quiet=True)


class Client:
    """One scenario's submits and polls, and the ledger of what they were answered."""

    def __init__(self, drill: Drill, session: aiohttp.ClientSession) -> None:
        self.drill = drill
        self.url = f"{drill.stack.web_url}{SUBMIT_PATH}"
        self.headers = drill.stack.auth
        self.ledger = Ledger()
        self._session = session
        self._polls = asyncio.Semaphore(POLL_CONNECTIONS)

    async def submit(
        self,
        prefix: str,
        model: str,
        count: int,
        rate: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Submit ``count`` jobs, ``rate`` a second on schedule (open loop), or else at once (64
        at a time), with ``headers`` beside the key's."""
        markers = [f"{prefix}-{n}" for n in range(count)]
        for marker in markers:
            self.ledger.submitted(marker)
        options: dict[str, Any] = {
            "body": lambda n: submit_body(markers[n], model),
            "headers": {**self.headers, **(headers or {})},
            "on_response": lambda n, status, body: self.ledger.answered(
                markers[n], status, body, time.time()
            ),
        }
        if rate:
            await open_loop(self.url, rate=rate, duration=count / rate, **options)
        else:
            await closed_loop(self.url, total=count, **options)

    async def poll(self, job_id: str) -> tuple[int, Observation | None]:
        """(HTTP status, what the poll showed); status 0 when nothing answered."""
        try:
            async with (
                self._polls,
                self._session.get(f"{self.url}/{job_id}", headers=self.headers) as response,
            ):
                if response.status in (200, 202):
                    return response.status, Observation.from_poll(await response.json())
                return response.status, None
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            return 0, None

    async def poll_at_rate(self, job_id: str, rate: float, seconds: float) -> dict[str, int]:
        """Poll one job ``rate`` times per second; answers by status ("0": none), and how many
        answers other than 200/202 were not in the error shape."""
        counts: Counter[str] = Counter()

        def seen(n: int, status: int, body: bytes) -> None:
            if status not in (200, 202) and not is_error_shape(body):
                counts["not_in_error_shape"] += 1

        load = await open_loop(
            f"{self.url}/{job_id}",
            method="GET",
            rate=rate,
            duration=seconds,
            headers=self.headers,
            on_response=seen,
        )
        counts.update({str(status): n for status, n in load.statuses.items()})
        counts.update({"0": load.errors} if load.errors else {})
        return dict(sorted(counts.items()))

    async def _see(self, job_id: str) -> None:
        _, observation = await self.poll(job_id)
        if observation is not None:
            self.ledger.seen(job_id, observation)

    async def watch(self) -> None:
        """Forever: poll, through the API, each accepted job the table shows finished."""
        while True:
            unseen = self.ledger.unseen_ids()
            rows = await self.drill.query(
                f"SELECT id::text FROM {JOBS_TABLE} "  # noqa: S608
                "WHERE id = ANY(%s::uuid[]) AND status IN ('completed', 'failed')",
                (unseen,),
            )
            await asyncio.gather(*(self._see(job_id) for (job_id,) in rows))
            await asyncio.sleep(1.0)

    async def wait_seen(self, deadline: float, label: str) -> bool:
        """Until every accepted job was seen terminal or ``deadline``; whether all were."""
        last_log = 0.0
        while (unseen := len(self.ledger.unseen_ids())) and time.monotonic() < deadline:
            if time.monotonic() - last_log >= 5:
                self.drill.log(f"  {label}: {unseen} accepted jobs not finished yet")
                last_log = time.monotonic()
            await asyncio.sleep(0.5)
        return not self.ledger.unseen_ids()

    async def final_poll(self) -> None:
        """Poll every accepted job once more; a 404 counts as gone (None)."""

        async def last(job_id: str) -> None:
            for _ in range(FINAL_POLL_TRIES):
                status, observation = await self.poll(job_id)
                if status in (200, 202, 404):
                    self.ledger.finally_seen(job_id, observation)
                    return
                await asyncio.sleep(1.0)
            self.ledger.finally_seen(job_id, None)

        await asyncio.gather(*(last(job_id) for job_id in self.ledger.accepted_ids()))

    async def read_tables(self) -> None:
        """Every job row (id, marker, status); the jobs completed and charged beside the charges
        in the keys' spend ledger, and the keys' pending counters beside their counted jobs
        pending or processing, all keys."""
        rows = await self.drill.query(
            f"SELECT id::text, request->>'prompt', status FROM {JOBS_TABLE}"  # noqa: S608
        )
        self.ledger.table_rows([(str(a), str(b), str(c)) for a, b, c in rows])
        charges = await self.drill.query(
            f"SELECT (SELECT count(*) FROM {JOBS_TABLE} WHERE status = 'completed'), "  # noqa: S608
            f"(SELECT count(*) FROM {JOBS_TABLE} WHERE cost_usd IS NOT NULL), "
            f"(SELECT coalesce(sum(requests), 0) FROM {SPEND_TABLE})"
        )
        self.ledger.charges(*(int(n) for n in charges[0]))
        counters = await self.drill.query(
            f"SELECT (SELECT coalesce(sum(pending), 0) FROM {COUNTERS_TABLE}), "  # noqa: S608
            f"(SELECT count(*) FROM {JOBS_TABLE} WHERE counted "
            "AND status IN ('pending', 'processing'))"
        )
        self.ledger.counters(*(int(n) for n in counters[0]))


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


async def observe(
    drill: Drill, label: str, load: Callable[[Client], Awaitable[None]], deadline_seconds: float
) -> Ledger:
    """Run ``load``, then wait until its accepted jobs finished (or the deadline), poll them all.

    The deadline counts from the end of ``load``, which includes its faults.
    """
    timeout = aiohttp.ClientTimeout(total=30.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        client = Client(drill, session)
        watcher = asyncio.create_task(client.watch())
        progress = asyncio.create_task(_report_progress(client.ledger, label, drill.log))
        try:
            await load(client)
            drill.log(f"  {label}: load done; waiting up to {deadline_seconds:g} s for the jobs")
            await client.wait_seen(time.monotonic() + deadline_seconds, label)
        finally:
            watcher.cancel()
            progress.cancel()
        await asyncio.sleep(SETTLE_SECONDS)
        await client.final_poll()
        await client.read_tables()
    return client.ledger


def verdict(summary: dict[str, Any], checks: dict[str, bool]) -> dict[str, Any]:
    """A scenario's figures with its pass/fail: 0 lost, 0 duplicated, every completed job charged
    once, the keys' pending counters equal to their jobs pending or processing, and its own
    condition: every one of its ``checks``, which its names describe."""
    accounted = summary["charged_twice"] == 0 and summary["completed_uncharged"] == 0
    accounted = accounted and summary["pending_miscounted"] == 0
    extra_ok = all(checks.values())
    return {
        **summary,
        "extra_condition": ", ".join(name.replace("_", " ") for name in checks),
        "extra_ok": extra_ok,
        "passed": summary["lost"] == 0 and summary["duplicated"] == 0 and accounted and extra_ok,
        "checks": checks,
    }
