"""What every scenario does around its fault: submit, watch jobs finish, poll them all at the end,
and count what the client saw (the report's legend in drill/run.py says what each count means).

``observe`` runs a scenario's load (and its faults) through a ``Client``, which submits with the
harness's load shapes and records each submit's own answer in a ``Ledger``. Every submit carries
a unique marker as its prompt, so each job row can be traced back to the submit that made it.
Meanwhile it polls each job the table shows finished; after the load it waits for the rest until
a deadline, polls every accepted job once more and reads the job table and the spend ledger,
which each scenario starts empty. A job row after an unanswered submit is no error (the client
cannot know), but a refused submit must have created nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from drill.services import PrivatePostgres, PrivateRedis
from harness.load import closed_loop, open_loop
from harness.load import run as run_async
from harness.procs import free_port
from harness.runs import Log
from harness.stack import JOBS_TABLE, Stack, StackConfig

TERMINAL = ("completed", "failed", "cancelled")
SPEND_TABLE = "gateway_keyspend"  # KeySpend (gateway/access/models.py); no Django here
COUNTERS_TABLE = "jobs_keycounters"  # KeyCounters (jobs/models.py)
ROWS = f"SELECT id::text, request->>'prompt', status FROM {JOBS_TABLE}"  # noqa: S608
# The job table's completed and charged jobs beside the spend ledger's charges, and the keys'
# counters of jobs pending or processing beside the job table's counted ones, all keys.
COUNTS = f"""SELECT count(*) FILTER (WHERE status = 'completed'), count(cost_usd),
    (SELECT coalesce(sum(requests), 0) FROM {SPEND_TABLE}),
    (SELECT coalesce(sum(pending), 0) FROM {COUNTERS_TABLE}),
    count(*) FILTER (WHERE counted AND status IN ('pending', 'processing'))
    FROM {JOBS_TABLE}"""  # noqa: S608
ERROR_SHAPE_KEYS = {"event_id", "type", "is_bifrost_error", "status_code", "error", "extra_fields"}
ERROR_KEYS = {"type", "code", "message", "param", "event_id"}


def is_error_shape(body: bytes) -> bool:
    """Whether an answer is a JSON error in the gateway's one error shape."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    error = data.get("error") if isinstance(data, dict) else None
    return (
        isinstance(error, dict) and data.keys() >= ERROR_SHAPE_KEYS and error.keys() >= ERROR_KEYS
    )


def _get(value: object, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


@dataclass(frozen=True)
class Observation:
    """One poll of a job: its status and what identifies its outcome, which must never change
    once a client has seen it (two observations are equal when their outcomes are)."""

    status: str
    status_code: int | None = None
    result_id: str | None = None
    error_code: str | None = None
    error_message: str | None = field(default=None, compare=False)

    @classmethod
    def from_poll(cls, body: dict[str, Any]) -> Observation:
        inner = _get(body.get("error"), "error")
        code, result_id = body.get("status_code"), _get(body.get("result"), "id")
        return cls(
            str(body.get("status")), code, result_id, _get(inner, "code"), _get(inner, "message")
        )

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass
class Submission:
    status: int | None = None  # None until answered, and for good when no answer came
    job_id: str | None = None
    error_shape: bool | None = None  # for answers other than 202
    answered_at: float | None = None

    @property
    def accepted(self) -> bool:
        return self.status == 202 and self.job_id is not None


@dataclass
class Ledger:
    submissions: dict[str, Submission] = field(default_factory=dict)  # by marker
    first_terminal: dict[str, Observation] = field(default_factory=dict)
    final: dict[str, Observation | None] = field(default_factory=dict)
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # ROWS at the end
    counts: tuple[int, ...] = (0, 0, 0, 0, 0)  # COUNTS at the end

    def answered(self, marker: str, status: int, body: bytes, at: float) -> None:
        entry = self.submissions[marker]
        entry.status, entry.answered_at = status, at
        if status != 202:
            entry.error_shape = is_error_shape(body)
            return
        with contextlib.suppress(ValueError, KeyError, TypeError):
            entry.job_id = str(json.loads(body)["id"])

    def accepted_ids(self) -> list[str]:
        return [s.job_id for s in self.submissions.values() if s.accepted and s.job_id]

    def unseen_ids(self) -> list[str]:
        """The accepted jobs not seen terminal yet."""
        return [job_id for job_id in self.accepted_ids() if job_id not in self.first_terminal]

    def seen(self, job_id: str, observation: Observation | None) -> None:
        if observation is not None and observation.terminal:
            self.first_terminal.setdefault(job_id, observation)

    def finally_seen(self, job_id: str, observation: Observation | None) -> None:
        self.final[job_id] = observation
        self.seen(job_id, observation)

    def summary(self) -> dict[str, Any]:
        subs, accepted = self.submissions, self.accepted_ids()
        finals = [self.final.get(job_id) for job_id in accepted]
        lost = [job for job, o in zip(accepted, finals, strict=True) if not o or not o.terminal]
        failed = Counter(o.error_code or "?" for o in finals if o and o.status == "failed")
        refused = [s for s in subs.values() if s.status is not None and not s.accepted]
        changed = [
            job_id
            for job_id, first in self.first_terminal.items()
            if (last := self.final.get(job_id)) is not None and last != first
        ]
        # Job rows whose submit was refused, or got no answer; and how many never finished.
        without_202 = dict.fromkeys(("after_refusal", "after_no_answer", "unfinished"), 0)
        for _, marker, status in self.rows:
            if (s := subs.get(marker)) is not None and not s.accepted:
                without_202["after_no_answer" if s.status is None else "after_refusal"] += 1
                without_202["unfinished"] += status not in TERMINAL
        extra_rows = len(self.rows) - len({marker for _, marker, _ in self.rows})
        table_completed, charged, charges, pending, active_counted = self.counts
        return {
            "submitted": len(subs),
            "accepted": len(accepted),
            "unanswered": sum(1 for s in subs.values() if s.status is None),
            "refused": dict(sorted(Counter(str(s.status) for s in refused).items())),
            "refused_not_in_error_shape": sum(1 for s in refused if not s.error_shape),
            "completed": sum(1 for o in finals if o and o.status == "completed"),
            "failed": dict(sorted(failed.items())),
            "lost": len(lost),
            "lost_ids": lost[:20],
            "duplicated": len(changed) + extra_rows,
            "changed_after_seen": changed[:20],
            "extra_rows": extra_rows,
            "charged_twice": charges - charged,
            "completed_uncharged": table_completed - charged,
            "pending_miscounted": pending - active_counted,
            "created_without_202": without_202,
            "rows_of_unknown_submits": sum(1 for _, marker, _ in self.rows if marker not in subs),
        }


MODEL = "openai/gpt-drill"
# Its price (set_model_price), so that every completed job is charged and the ledger can show
# that none was charged twice.
DRILL_PRICE = ("--input-per-million", "1", "--output-per-million", "2")
SUBMIT_PATH = "/v1/async/completions"
SETTLE_SECONDS = 2.0  # between the last job seen finished and the final poll
PROGRESS_SECONDS = 5.0
POLL_CONNECTIONS = 16
FINAL_POLL_TRIES = 10
FINISHED = f"SELECT id::text FROM {JOBS_TABLE} WHERE id = ANY(%s::uuid[])"  # noqa: S608
FINISHED += " AND status IN ('completed', 'failed')"

# Production defaults in brackets. A dead worker's jobs are re-queued once their lease lapses
# (10 s [60 s]) at beat's next look (every 15 s), and a hanging upstream fails a call after 8 s
# [120 s]; the drill's normal upstream answers within 3 s.
DRILL_SETTINGS = {
    "GATEWAY_JOB_LEASE_SECONDS": "10",
    "GATEWAY_UPSTREAM_TIMEOUT": "8",
    "GATEWAY_UPSTREAM_CONNECT_TIMEOUT": "2",
}


def drill_config(database_url: str, redis_url: str, var_dir: Path) -> StackConfig:
    """Web (granian), two workers and beat on the drill's own Postgres and Redis, and the fake
    upstream on a free port."""
    settings = {**DRILL_SETTINGS, "GATEWAY_WORKER_MAX_IN_FLIGHT": "4096", "GATEWAY_RETRIES": "0"}
    upstream_url = f"http://127.0.0.1:{free_port()}"
    return StackConfig(
        database_url, var_dir, "drill", redis_url, upstream_url, workers=2, settings=settings
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
        alive = self.stack.procs.alive
        if not alive(self.postgres.name):
            self.postgres.start()
        if not alive(self.redis.name):
            self.redis.start()
        if not alive("web"):
            self.stack.start_web()
        for n in range(self.stack.config.workers):
            if not alive(f"worker-{n}"):
                self.stack.start_worker(n)

    def max_submit_rate(self, label: str, seconds: float) -> float:
        """Submits answered 202 per second, 64 connections back to back for ``seconds`` (after
        2 s of warm-up)."""
        prefix, url = self.marker(label), f"{self.stack.web_url}{SUBMIT_PATH}"
        options: dict[str, Any] = {"duration": seconds, "warmup": 2.0, "ok_statuses": (202,)}
        options["body"] = lambda n: submit_body(f"{prefix}-{n}", MODEL)
        return run_async(closed_loop(url, headers=self.stack.auth, **options)).rate


class Client:
    """One scenario's submits and polls, and the ledger of what they were answered."""

    def __init__(self, drill: Drill, session: aiohttp.ClientSession) -> None:
        self.drill = drill
        self.ledger = Ledger()
        self.url = f"{drill.stack.web_url}{SUBMIT_PATH}"
        self.headers = drill.stack.auth
        self._session = session
        self._polls = asyncio.Semaphore(POLL_CONNECTIONS)

    async def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a query in a thread; none while the database is away."""
        return await asyncio.to_thread(self.drill.stack.query, sql, params, quiet=True)

    async def submit(
        self, prefix: str, model: str, count: int, rate: float = 0, headers: Mapping[str, str] = {}
    ) -> None:
        """Submit ``count`` jobs, ``rate`` a second on schedule (open loop), or else at once (64
        at a time), with ``headers`` beside the key's."""
        markers = [f"{prefix}-{n}" for n in range(count)]
        self.ledger.submissions |= {marker: Submission() for marker in markers}

        def answered(n: int, status: int, body: bytes) -> None:
            self.ledger.answered(markers[n], status, body, time.time())

        options: dict[str, Any] = {"headers": {**self.headers, **headers}, "on_response": answered}
        options["body"] = lambda n: submit_body(markers[n], model)
        if rate:
            await open_loop(self.url, rate=rate, duration=count / rate, **options)
        else:
            await closed_loop(self.url, total=count, **options)

    async def poll(self, job_id: str) -> tuple[int, Observation | None]:
        """(HTTP status, what the poll showed); status 0 when nothing answered."""
        url = f"{self.url}/{job_id}"
        try:
            async with self._polls, self._session.get(url, headers=self.headers) as response:
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
            counts["not_in_error_shape"] += status not in (200, 202) and not is_error_shape(body)

        url, headers = f"{self.url}/{job_id}", self.headers
        load = await open_loop(
            url, method="GET", rate=rate, duration=seconds, headers=headers, on_response=seen
        )
        counts.update({str(status): n for status, n in load.statuses.items()}, **{"0": load.errors})
        return dict(sorted((+counts).items()))

    async def watch(self, label: str) -> None:
        """Forever: poll, through the API, each accepted job the table shows finished; say every
        5 s how far the scenario got."""

        async def see(job_id: str) -> None:
            self.ledger.seen(job_id, (await self.poll(job_id))[1])

        started = logged = time.monotonic()
        while True:
            rows = await self.query(FINISHED, (self.ledger.unseen_ids(),))
            await asyncio.gather(*(see(job_id) for (job_id,) in rows))
            if (now := time.monotonic()) - logged >= PROGRESS_SECONDS:
                answered = [s.accepted for s in self.ledger.submissions.values() if s.status]
                done, logged = len(self.ledger.first_terminal), now
                self.drill.log(
                    f"  {label} {now - started:5.0f}s: answered {len(answered):,}, accepted "
                    f"{sum(answered):,}, refused {answered.count(False):,}, finished {done:,}"
                )
            await asyncio.sleep(1.0)

    async def wait_seen(self, deadline: float) -> bool:
        """Until every accepted job was seen terminal or ``deadline``; whether all were."""
        while self.ledger.unseen_ids() and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        return not self.ledger.unseen_ids()

    async def finish(self) -> None:
        """Poll every accepted job once more (a 404 counts as gone: None), then read every job row
        (id, marker, status) and the figures the ledger compares."""

        async def last(job_id: str) -> None:
            for _ in range(FINAL_POLL_TRIES):
                status, observation = await self.poll(job_id)
                if status in (200, 202, 404):
                    self.ledger.finally_seen(job_id, observation)
                    return
                await asyncio.sleep(1.0)
            self.ledger.finally_seen(job_id, None)

        await asyncio.gather(*(last(job_id) for job_id in self.ledger.accepted_ids()))
        rows = await self.query(ROWS)
        self.ledger.rows = [(job_id, str(marker), status) for job_id, marker, status in rows]
        self.ledger.counts = tuple(int(n) for n in (await self.query(COUNTS))[0])


async def at(seconds: float, action: Callable[[], Any], log: Log, what: str) -> float:
    """Run the blocking ``action`` ``seconds`` from now (in a thread); when it ended."""
    await asyncio.sleep(seconds)
    log(f"  fault: {what}")
    await asyncio.to_thread(action)
    return time.time()


def observe(
    drill: Drill,
    label: str,
    latency_ms: float,
    load: Callable[[Client], Awaitable[None]],
    deadline_seconds: float,
    around: AbstractAsyncContextManager[Any] | None = None,
) -> Ledger:
    """Empty the tables, set the upstream's latency and run ``load``, then wait until its accepted
    jobs finished (or the deadline, which counts from the end of ``load``, its faults included)
    and poll them all; inside ``around``, if any, until the end."""
    drill.clear_jobs()
    drill.stack.set_latency(latency_ms)

    async def observed() -> Ledger:
        timeout = aiohttp.ClientTimeout(total=30.0)
        async with around or nullcontext(), aiohttp.ClientSession(timeout=timeout) as session:
            client = Client(drill, session)
            watcher = asyncio.create_task(client.watch(label))
            try:
                await load(client)
                drill.log(f"  {label}: load done; waiting up to {deadline_seconds:g} s for jobs")
                await client.wait_seen(time.monotonic() + deadline_seconds)
            finally:
                watcher.cancel()
            await asyncio.sleep(SETTLE_SECONDS)
            await client.finish()
        return client.ledger

    return run_async(observed())


def words(name: str) -> str:
    return name.replace("_", " ")


def verdict(summary: dict[str, Any], checks: dict[str, bool]) -> dict[str, Any]:
    """A scenario's figures with its pass/fail: 0 lost, 0 duplicated, every completed job charged
    once, the keys' pending counters equal to their jobs pending or processing, and its own
    condition: every one of its ``checks``, which its names describe."""
    counted = ("lost", "duplicated", "charged_twice", "completed_uncharged", "pending_miscounted")
    extra_ok = all(checks.values())
    return {
        **summary,
        "extra_condition": ", ".join(map(words, checks)),
        "extra_ok": extra_ok,
        "passed": extra_ok and not any(summary[name] for name in counted),
        "checks": checks,
    }
