"""The tools' HTTP load, on aiohttp with keep-alive connections, in three shapes:

- ``closed_loop``: N connections send requests back to back: the most a server can take.
- ``open_loop``: requests start on a fixed schedule whether or not earlier ones have finished,
  and latency counts from the scheduled start, so queueing in the client counts against the
  server, as a real client sees it: whether a server keeps up with an arrival rate.
- ``submit_and_follow``: submit jobs, then poll each until it is finished: completed jobs per
  second through an asynchronous API (the gateway's, or a peer's).

A request is ``ok`` when its status is one of ``ok_statuses``; ``errors`` are transport errors
(refused or reset connections, timeouts) that produced no status at all.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import aiohttp
from aiohttp import ClientSession as Session

from harness.upstream import new_event_loop

T = TypeVar("T")
Body = bytes | Callable[[int], bytes] | None
Url = str | Callable[[int], str]
Headers = dict[str, str] | None
Outcome = tuple[int, bytes] | None  # (status, body); None: a transport error
OnResponse = Callable[[int, int, bytes], None]  # (request index, status, body)
Progress = Callable[[int], None]

REQUEST_TIMEOUT = 120.0
OPEN_LOOP_CONNECTIONS = 256
PROGRESS_SECONDS = 1.0
ERROR_PAUSE = 0.01  # after a transport error, so a dead server does not spin the loop


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p90, p99 (nearest rank), max, mean and n of ``values``; zeros when empty."""
    if not values:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0, "n": 0}
    ordered, n = sorted(values), len(values)
    ranks = {f"p{p}": float(ordered[max(0, math.ceil(p / 100 * n) - 1)]) for p in (50, 90, 99)}
    return {**ranks, "max": float(ordered[-1]), "mean": sum(ordered) / n, "n": n}


@dataclass
class LoadResult:
    """What one load run measured (warm-up excluded); ``rate`` is ``ok`` per second."""

    requests: int
    statuses: dict[int, int]
    errors: int
    seconds: float
    ok: int
    rate: float
    latency_ms: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["statuses"] = {str(status): count for status, count in sorted(self.statuses.items())}
        return data


@dataclass
class _Tally:
    ok_statuses: tuple[int, ...]
    on_response: OnResponse | None
    progress: Progress | None
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    latencies: list[float] = field(default_factory=list)

    def add(self, index: int, outcome: Outcome, latency: float, counted: bool) -> None:
        """One request's outcome; ``on_response`` sees it even when it is not ``counted``."""
        if outcome is None:
            self.errors += counted
            return
        if counted:
            self.statuses[outcome[0]] += 1
            if outcome[0] in self.ok_statuses:
                self.latencies.append(latency * 1000)
        if self.on_response is not None:
            self.on_response(index, *outcome)

    def result(self, seconds: float) -> LoadResult:
        ok = len(self.latencies)
        return LoadResult(
            requests=self.statuses.total() + self.errors,
            statuses=dict(sorted(self.statuses.items())),
            errors=self.errors,
            seconds=seconds,
            ok=ok,
            rate=ok / seconds if seconds > 0 else 0.0,
            latency_ms=percentiles(self.latencies),
        )

    async def run(self, connections: int, work: Callable[[Session], Awaitable[Any]]) -> None:
        """``work`` on a session of ``connections`` while calling ``progress(done)`` about once a
        second, and at the end."""
        report = self.progress or (lambda _: None)

        async def tick() -> None:
            while True:
                await asyncio.sleep(PROGRESS_SECONDS)
                report(self.statuses.total())

        ticker = asyncio.create_task(tick())
        try:
            async with _session(connections) as session:
                await work(session)
        finally:
            ticker.cancel()
            report(self.statuses.total())


def _session(connections: int) -> Session:
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=0, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    return Session(connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",))


async def _send(
    session: Session, method: str, url: Url, body: Body, index: int, headers: Headers
) -> Outcome:
    """Request ``index``: (status, body), or None on a transport error."""
    url = url(index) if callable(url) else url
    data = body(index) if callable(body) else body
    try:
        async with session.request(method, url, data=data, headers=headers) as response:
            return response.status, await response.read()
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None


async def closed_loop(
    url: Url,
    *,
    method: str = "POST",
    body: Body = None,
    headers: Headers = None,
    connections: int = 64,
    duration: float | None = None,
    total: int | None = None,
    ok_statuses: tuple[int, ...] = (200, 202),
    on_response: OnResponse | None = None,
    progress: Progress | None = None,
    warmup: float = 0.0,
) -> LoadResult:
    """``connections`` workers send requests back to back until ``duration`` or ``total``.

    The first ``warmup`` seconds of requests are not counted. ``url`` and ``body`` are fixed or
    functions of the request's number. ``on_response`` sees every response, warm-up included (a
    caller collecting job ids needs them all).
    """
    if duration is None and total is None:
        raise ValueError("closed_loop needs a duration or a total")
    tally = _Tally(ok_statuses, on_response, progress)
    measure_from = time.perf_counter() + warmup
    stop_at = measure_from + duration if duration is not None else math.inf
    sequence = 0  # requests started
    counted = 0  # requests started after the warm-up
    last_end = measure_from

    async def worker(session: Session) -> None:
        nonlocal sequence, counted, last_end
        while (begin := time.perf_counter()) < stop_at:
            measured = begin >= measure_from
            if measured and total is not None and counted >= total:
                return
            counted += measured
            index = sequence
            sequence += 1
            outcome = await _send(session, method, url, body, index, headers)
            end = time.perf_counter()
            tally.add(index, outcome, end - begin, measured)
            if outcome is None:
                await asyncio.sleep(ERROR_PAUSE)
            elif measured:
                last_end = max(last_end, end)

    async def all_workers(session: Session) -> None:
        await asyncio.gather(*(worker(session) for _ in range(connections)))

    await tally.run(connections, all_workers)
    return tally.result(max(last_end, time.perf_counter()) - measure_from)


async def open_loop(
    url: Url,
    *,
    rate: float,
    duration: float,
    method: str = "POST",
    body: Body = None,
    headers: Headers = None,
    ok_statuses: tuple[int, ...] = (200, 202),
    on_response: OnResponse | None = None,
    progress: Progress | None = None,
) -> LoadResult:
    """Starts ``rate`` requests per second for ``duration`` seconds, on schedule; a wait for one
    of ``OPEN_LOOP_CONNECTIONS`` counts in a request's latency."""
    if rate <= 0 or duration <= 0:
        raise ValueError("open_loop needs a positive rate and duration")
    tally = _Tally(ok_statuses, on_response, progress)
    planned = round(rate * duration)
    start = time.perf_counter()

    async def one(session: Session, index: int) -> None:
        outcome = await _send(session, method, url, body, index, headers)
        tally.add(index, outcome, time.perf_counter() - (start + index / rate), True)

    async def schedule(session: Session) -> None:
        tasks: list[asyncio.Task[None]] = []
        while len(tasks) < planned:
            due_now = min(planned, int((time.perf_counter() - start) * rate) + 1)
            tasks += [asyncio.create_task(one(session, i)) for i in range(len(tasks), due_now)]
            if len(tasks) < planned:
                await asyncio.sleep(max(0.0, start + len(tasks) / rate - time.perf_counter()))
        await asyncio.gather(*tasks)

    await tally.run(OPEN_LOOP_CONNECTIONS, schedule)
    return tally.result(time.perf_counter() - start)


def _field(body: bytes, name: str) -> str | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    value = data.get(name) if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


async def submit_and_follow(
    submit_url: str,
    body: bytes,
    *,
    poll_url: Callable[[str], str],
    headers: dict[str, str],
    jobs: int,
    terminal: frozenset[str] = frozenset({"completed", "failed"}),
    connections: int = 64,
    poll_interval: float = 0.2,
    timeout: float = 300.0,
    unknown_after: float = 5.0,
) -> dict[str, Any]:
    """Submits ``jobs`` (each answer's ``id`` names a job), then polls each at most once per
    ``poll_interval`` until its ``status`` is in ``terminal``; ``timeout`` bounds the whole call.

    Returns ``submitted`` (answers with an id), ``completed`` and ``failed`` (any other terminal
    status), ``lost`` (never seen terminal: still pending at the timeout, or answering only 404
    for ``unknown_after`` seconds), ``seconds`` (from the start to the last terminal status seen),
    ``completed_per_s`` and what explains a shortfall: answers by status, errors and the first
    error of each kind. It never raises on what the server answers.
    """
    ids: list[str] = []
    first: dict[str, str] = {}  # the first error of each kind: submit, poll, failure
    counts: Counter[str] = Counter()
    last_answer: dict[str, str] = {}  # by job: its status, or the HTTP status that said none
    first_404: dict[str, float] = {}  # by job: when a run of 404s began
    unfinished: list[str] = []

    def submitted(index: int, status: int, answer: bytes) -> None:
        job_id = _field(answer, "id") if status in (200, 202) else None
        if job_id is None:
            first.setdefault("submit", f"{status} {answer[:300].decode('utf-8', 'replace')}")
        else:
            ids.append(job_id)

    started = time.monotonic()
    deadline, last_terminal = started + timeout, started
    submits = await closed_loop(
        submit_url,
        body=body,
        headers=headers,
        connections=connections,
        total=jobs,
        ok_statuses=(200, 202),
        on_response=submitted,
    )
    if submits.errors:
        first.setdefault("submit", f"no answer to {submits.errors} submits")

    async def follow(session: Session, job_id: str) -> None:
        nonlocal last_terminal
        while True:
            counts["polls"] += 1
            outcome = await _send(session, "GET", poll_url(job_id), None, 0, headers)
            now = time.monotonic()
            if outcome is None:
                counts["poll_errors"] += 1
                first.setdefault("poll", "no answer")
            else:
                status, answer = outcome
                job_status = _field(answer, "status") if status in (200, 202) else None
                last_answer[job_id] = job_status or str(status)
                if job_status in terminal:
                    last_terminal = now
                    counts["completed" if job_status == "completed" else "failed"] += 1
                    if job_status != "completed":
                        first.setdefault("failure", answer[:300].decode("utf-8", "replace"))
                    return
                if job_status is None:
                    counts["not_found" if status == 404 else "poll_errors"] += 1
                    first.setdefault("poll", f"{status} {answer[:300].decode('utf-8', 'replace')}")
                if status != 404:
                    first_404.pop(job_id, None)
                elif now - first_404.setdefault(job_id, now) >= unknown_after:
                    counts["unknown"] += 1
                    return
            if time.monotonic() >= deadline:
                unfinished.append(job_id)
                return
            await asyncio.sleep(poll_interval)

    async with _session(connections) as session:  # its connections bound the polls at once
        await asyncio.gather(*(follow(session, job_id) for job_id in ids))
    seconds = last_terminal - started
    return {
        "jobs": jobs,
        "submitted": len(ids),
        "completed": counts["completed"],
        "failed": counts["failed"],
        "lost": len(unfinished) + counts["unknown"],
        "seconds": round(seconds, 4),
        "completed_per_s": round(counts["completed"] / seconds, 2) if counts["completed"] else 0.0,
        "submit_per_s": round(submits.rate, 2),
        "submit_statuses": {str(k): n for k, n in submits.statuses.items()}
        | ({"error": submits.errors} if submits.errors else {}),
        "submit_errors": jobs - len(ids),
        "pending_at_timeout": dict(Counter(last_answer.get(j, "no answer") for j in unfinished)),
        **{name: counts[name] for name in ("polls", "poll_errors", "not_found", "unknown")},
        **{f"first_{kind}_error": first.get(kind) for kind in ("submit", "poll")},
        "first_failure": first.get("failure"),
    }


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Runs ``coro`` to completion on a uvloop loop when uvloop is installed."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(coro)
