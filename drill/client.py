"""The drill's client: submits on a schedule, polls jobs as they finish, reads the job table.

Unlike the benchmark's load generator, which keeps totals, it records each submit's own answer
in a ``Ledger`` (which submit got which job id, or which refusal), because that is what lost and
duplicated jobs are counted from.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
import psycopg

from drill.ledger import Ledger, Observation, is_error_shape

SUBMIT_PATH = "/v1/async/completions"
REQUEST_TIMEOUT = 30.0
POLL_CONNECTIONS = 16
WATCH_SECONDS = 1.0
FINAL_POLL_TRIES = 10

Log = Callable[[str], None]


def submit_body(marker: str, model: str) -> bytes:
    return json.dumps({"model": model, "prompt": marker, "max_tokens": 16}).encode()


class DrillClient:
    """One scenario's HTTP session and table reader; use as ``async with``."""

    def __init__(self, web_url: str, key: str, database_url: str, log: Log) -> None:
        self.web_url = web_url
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.database_url = database_url
        self.log = log
        self._session: aiohttp.ClientSession | None = None
        self._polls = asyncio.Semaphore(POLL_CONNECTIONS)

    async def __aenter__(self) -> DrillClient:
        connector = aiohttp.TCPConnector(limit=512, limit_per_host=0)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use DrillClient as an async context manager"
        return self._session

    # --- submitting -------------------------------------------------------------------------------
    async def submit(self, ledger: Ledger, marker: str, model: str) -> None:
        ledger.submitted(marker)
        url = f"{self.web_url}{SUBMIT_PATH}"
        try:
            async with self.session.post(
                url, data=submit_body(marker, model), headers=self.headers
            ) as response:
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError):
            return  # unanswered
        ledger.answered(marker, response.status, body, time.monotonic())

    async def submit_at_rate(
        self, ledger: Ledger, prefix: str, model: str, rate: float, seconds: float
    ) -> None:
        """Submit ``rate`` jobs per second for ``seconds``, on schedule (open loop)."""
        planned = round(rate * seconds)
        start = time.monotonic()
        tasks: list[asyncio.Task[None]] = []
        for n in range(planned):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.submit(ledger, f"{prefix}-{n}", model)))
        await asyncio.gather(*tasks)

    async def submit_count(self, ledger: Ledger, prefix: str, model: str, count: int) -> None:
        """Submit ``count`` jobs at once (64 at a time)."""
        gate = asyncio.Semaphore(64)

        async def one(n: int) -> None:
            async with gate:
                await self.submit(ledger, f"{prefix}-{n}", model)

        await asyncio.gather(*(one(n) for n in range(count)))

    # --- polling ----------------------------------------------------------------------------------
    async def poll(self, job_id: str) -> tuple[int, Observation | None]:
        """(HTTP status, what the poll showed); status 0 when nothing answered."""
        url = f"{self.web_url}{SUBMIT_PATH}/{job_id}"
        try:
            async with self._polls, self.session.get(url, headers=self.headers) as response:
                if response.status in (200, 202):
                    return response.status, Observation.from_poll(await response.json())
                return response.status, None
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            return 0, None

    async def poll_at_rate(self, job_id: str, rate: float, seconds: float) -> dict[str, int]:
        """Poll one job ``rate`` times per second; answers by status ("0": none), and how many
        answers other than 200/202 were not in the error shape."""
        url = f"{self.web_url}{SUBMIT_PATH}/{job_id}"
        counts: Counter[str] = Counter()

        async def one() -> None:
            try:
                async with self.session.get(url, headers=self.headers) as response:
                    body = await response.read()
            except (aiohttp.ClientError, TimeoutError, OSError):
                counts["0"] += 1
                return
            counts[str(response.status)] += 1
            if response.status not in (200, 202) and not is_error_shape(body):
                counts["not_in_error_shape"] += 1

        tasks = []
        for _ in range(round(rate * seconds)):
            tasks.append(asyncio.create_task(one()))
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*tasks)
        return dict(sorted(counts.items()))

    async def _see(self, ledger: Ledger, job_id: str) -> None:
        _, observation = await self.poll(job_id)
        if observation is not None:
            ledger.seen(job_id, observation)

    async def watch(self, ledger: Ledger) -> None:
        """Forever: poll, through the API, each accepted job the table shows finished."""
        while True:
            finished = await self.finished_among(ledger.unseen_ids())
            await asyncio.gather(*(self._see(ledger, job_id) for job_id in finished))
            await asyncio.sleep(WATCH_SECONDS)

    async def wait_seen(self, ledger: Ledger, deadline: float, label: str) -> bool:
        """Until every accepted job was seen terminal or ``deadline``; whether all were."""
        last_log = 0.0
        while (unseen := len(ledger.unseen_ids())) and time.monotonic() < deadline:
            if time.monotonic() - last_log >= 5:
                self.log(f"  {label}: {unseen} accepted jobs not finished yet")
                last_log = time.monotonic()
            await asyncio.sleep(0.5)
        return not ledger.unseen_ids()

    async def final_poll(self, ledger: Ledger) -> None:
        """Poll every accepted job once more; a 404 counts as gone (None)."""

        async def last(job_id: str) -> None:
            for _ in range(FINAL_POLL_TRIES):
                status, observation = await self.poll(job_id)
                if status in (200, 202, 404):
                    ledger.finally_seen(job_id, observation)
                    return
                await asyncio.sleep(1.0)
            ledger.finally_seen(job_id, None)

        await asyncio.gather(*(last(job_id) for job_id in ledger.accepted_ids()))

    # --- the job table ----------------------------------------------------------------------------
    async def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a query, or none while the database is away."""
        try:
            async with await psycopg.AsyncConnection.connect(
                self.database_url, autocommit=True, connect_timeout=2
            ) as conn:
                cursor = await conn.execute(sql, params)  # type: ignore[arg-type]
                return await cursor.fetchall()
        except psycopg.Error:
            return []

    async def finished_among(self, job_ids: list[str]) -> list[str]:
        if not job_ids:
            return []
        rows = await self._query(
            "SELECT id::text FROM jobs_asyncjob "
            "WHERE id = ANY(%s::uuid[]) AND status IN ('completed', 'failed')",
            (job_ids,),
        )
        return [job_id for (job_id,) in rows]

    async def table_rows(self) -> list[tuple[str, str, str]]:
        """(id, marker, status) of every job row."""
        rows = await self._query("SELECT id::text, request->>'prompt', status FROM jobs_asyncjob")
        return [(str(a), str(b), str(c)) for a, b, c in rows]
