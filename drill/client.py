"""The drill's client: submits and polls through the harness's load shapes, recording each
submit's own answer in a ``Ledger`` (which submit got which job id, or which refusal), because
that is what lost and duplicated jobs are counted from."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Mapping

import aiohttp

from drill.ledger import SPEND_TABLE, Ledger, Observation, is_error_shape
from harness.load import closed_loop, open_loop
from harness.stack import Stack

SUBMIT_PATH = "/v1/async/completions"
REQUEST_TIMEOUT = 30.0
POLL_CONNECTIONS = 16
WATCH_SECONDS = 1.0
FINAL_POLL_TRIES = 10

Log = Callable[[str], None]


def submit_body(marker: str, model: str) -> bytes:
    return json.dumps({"model": model, "prompt": marker, "max_tokens": 16}).encode()


class DrillClient:
    """One scenario's submits and polls; use as ``async with``."""

    def __init__(self, stack: Stack, log: Log) -> None:
        self.stack = stack
        self.url = f"{stack.web_url}{SUBMIT_PATH}"
        self.headers = stack.auth
        self.log = log
        self._session: aiohttp.ClientSession | None = None
        self._polls = asyncio.Semaphore(POLL_CONNECTIONS)

    async def __aenter__(self) -> DrillClient:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        self._session = aiohttp.ClientSession(timeout=timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    # --- submitting -------------------------------------------------------------------------------
    def _markers(self, ledger: Ledger, prefix: str, count: int) -> list[str]:
        markers = [f"{prefix}-{n}" for n in range(count)]
        for marker in markers:
            ledger.submitted(marker)
        return markers

    async def submit_at_rate(
        self, ledger: Ledger, prefix: str, model: str, rate: float, seconds: float
    ) -> None:
        """Submit ``rate`` jobs per second for ``seconds``, on schedule (open loop)."""
        markers = self._markers(ledger, prefix, round(rate * seconds))
        await open_loop(
            self.url,
            rate=rate,
            duration=seconds,
            body=lambda n: submit_body(markers[n], model),
            headers=self.headers,
            on_response=lambda n, status, body: ledger.answered(
                markers[n], status, body, time.monotonic()
            ),
        )

    async def submit_count(
        self,
        ledger: Ledger,
        prefix: str,
        model: str,
        count: int,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Submit ``count`` jobs at once (64 at a time), with ``headers`` beside the key's."""
        markers = self._markers(ledger, prefix, count)
        await closed_loop(
            self.url,
            body=lambda n: submit_body(markers[n], model),
            headers={**self.headers, **(headers or {})},
            total=count,
            on_response=lambda n, status, body: ledger.answered(
                markers[n], status, body, time.monotonic()
            ),
        )

    # --- polling ----------------------------------------------------------------------------------
    async def poll(self, job_id: str) -> tuple[int, Observation | None]:
        """(HTTP status, what the poll showed); status 0 when nothing answered."""
        assert self._session is not None, "use DrillClient as an async context manager"
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

    # --- the job table (none while the database is away) ------------------------------------------
    async def finished_among(self, job_ids: list[str]) -> list[str]:
        if not job_ids:
            return []
        rows = await asyncio.to_thread(
            self.stack.query,
            "SELECT id::text FROM jobs_asyncjob "
            "WHERE id = ANY(%s::uuid[]) AND status IN ('completed', 'failed')",
            (job_ids,),
            quiet=True,
        )
        return [job_id for (job_id,) in rows]

    async def charges(self) -> tuple[int, int, int]:
        """(completed jobs, jobs charged, charges in the key's spend ledger), all keys."""
        sql = (
            "SELECT (SELECT count(*) FROM jobs_asyncjob WHERE status = 'completed'), "  # noqa: S608
            "(SELECT count(*) FROM jobs_asyncjob WHERE cost_usd IS NOT NULL), "
            f"(SELECT coalesce(sum(requests), 0) FROM {SPEND_TABLE})"
        )
        rows = await asyncio.to_thread(self.stack.query, sql, quiet=True)
        completed, charged, ledger = rows[0]
        return int(completed), int(charged), int(ledger)

    async def table_rows(self) -> list[tuple[str, str, str]]:
        """(id, marker, status) of every job row."""
        sql = "SELECT id::text, request->>'prompt', status FROM jobs_asyncjob"
        rows = await asyncio.to_thread(self.stack.query, sql, quiet=True)
        return [(str(a), str(b), str(c)) for a, b, c in rows]
