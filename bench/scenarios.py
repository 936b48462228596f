"""The benchmark's scenarios S1-S8 (S1 and S4 also for chat completions), each returning its raw
figures. Every figure compared is measured in the same run as what it is compared with (this
machine is shared and noisy), so the targets are ratios or pairs. The runner empties the job table
before each scenario.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from bench import peer_litellm, reference, seed
from bench.reference import JOBS_PATH
from harness.load import LoadResult, closed_loop, open_loop, percentiles, run, submit_and_follow
from harness.procs import free_port, request_json, tree_rss_bytes
from harness.runs import Log
from harness.stack import JOBS_TABLE, REPO, UNREACHED_LIMITS, Stack, StackConfig, ensure_database

SUBMIT_PATH = "/v1/async/completions"
BENCH_MODEL = "openai/gpt-bench"
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://root@127.0.0.1:5432/gateway_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
JSON = {"Content-Type": "application/json"}


def bench_config(upstream_url: str) -> StackConfig:
    """The gateway as the benchmark runs it: production services, two workers."""
    # Per worker process. S2's 1 s latency needs room for all its 5,000 jobs at once.
    settings = {"GATEWAY_WORKER_MAX_IN_FLIGHT": "4096", "GATEWAY_RETRIES": "0"}
    return StackConfig(
        database_url=DATABASE_URL,
        var_dir=REPO / ".bench" / "var",
        queue="bench",
        broker_url=REDIS_URL,
        upstream_url=upstream_url,
        workers=2,
        settings=settings,
    )


class BenchStack(Stack):
    """The stack with the bare reference handlers beside it."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.reference_url = f"http://127.0.0.1:{free_port()}"

    def prepare(self, key_name: str, *key_options: str) -> None:
        ensure_database(self.config.database_url)
        super().prepare(key_name, *(key_options or UNREACHED_LIMITS))
        self.truncate()
        reference.prepare(self.config.database_url, REDIS_URL)

    def start_reference(self) -> None:
        """As many processes as the gateway's web server."""
        config, port = self.config, self.reference_url.rsplit(":", 1)[1]
        argv = [sys.executable, "-m", "bench.reference", "--port", port, "--redis-url", REDIS_URL]
        argv += ["--workers", str(config.web_processes), "--database-url", config.database_url]
        self.procs.start("reference", argv, cwd=REPO)
        self.procs.wait_http("reference", f"{self.reference_url}/health")

    def percentiles_of(self, interval: str, where: str, less: float = 0) -> dict[str, float]:
        """``percentiles`` in ms of a completed job's ``interval`` less ``less`` seconds, over
        the completed jobs ``where``."""
        ms = f"(extract(epoch FROM {interval}) - {less}) * 1000"
        sql = f"SELECT {ms} FROM {JOBS_TABLE} WHERE {where} AND status = 'completed'"  # noqa: S608
        figures = percentiles([float(x) for (x,) in self.query(sql)])
        return {name: round(value, 2) for name, value in figures.items()}


class Sizes(NamedTuple):
    """How long and how large each scenario is: ``FULL`` for the record, ``QUICK`` to check."""

    seconds: float  # each closed-loop measurement (S1, S4, S7)
    warmup: float
    drain_jobs: int  # S2
    steady_seconds: float  # S3, and S8's submits
    steady_latency_ms: float
    inflight_jobs: int  # S5
    purge_rows: int  # S6
    peer_jobs: int  # S7 completed


FULL = Sizes(15.0, 3.0, 5000, 30.0, 1000.0, 1000, 1_000_000, 1000)
QUICK = Sizes(2.5, 0.5, 1500, 6.0, 200.0, 1000, 100_000, 300)


def submit_body(n: int) -> bytes:
    return json.dumps(
        {"model": BENCH_MODEL, "prompt": f"Say hello to job {n}", "max_tokens": 16}
    ).encode()


def chat_body(n: int) -> bytes:
    messages = [
        {"role": "system", "content": "You are brief."},
        {"role": "user", "content": f"Say hello to job {n}"},
    ]
    return json.dumps({"model": BENCH_MODEL, "messages": messages, "max_tokens": 16}).encode()


class RequestShape(NamedTuple):
    path: str
    body: Callable[[int], bytes]  # the body of job number n


COMPLETION = RequestShape(SUBMIT_PATH, submit_body)
CHAT = RequestShape("/v1/async/chat/completions", chat_body)


def _progress(log: Log, label: str) -> Callable[[int], None]:
    return lambda done: log(f"  {label}: {done:,}")


def _measured(url: str, sizes: Sizes, log: Log, label: str, **options: Any) -> dict[str, Any]:
    """One measured closed loop: 64 keep-alive connections for the scenario's duration."""
    options = {"ok_statuses": (202,), "progress": _progress(log, label), **options}
    return run(closed_loop(url, duration=sizes.seconds, warmup=sizes.warmup, **options)).to_json()


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else 0.0


# Each side measures twice, half the duration each time, the gateway first and last: a swing in
# what else the shared machine runs, or a slow drift, lands on both sides alike, not on whichever
# side happened to be measuring then.
TURN_ORDER = ("gateway", "reference", "reference", "gateway")


def _versus_reference(
    stack: BenchStack, sizes: Sizes, log: Log, what: str, ours: str, theirs: str, **options: Any
) -> dict[str, Any]:
    """The gateway's ``ours`` and the reference's ``theirs`` under the same closed loop, taking
    turns (``TURN_ORDER``), each side's turns then summed into one rate."""
    log(f"{what}: gateway at {ours}, reference at {theirs} (64 connections; turns: {TURN_ORDER})")
    # The reference takes no key; a GET has no body, so it gets no Content-Type either.
    their_headers = None if options.get("method") == "GET" else JSON
    sides = {
        "gateway": (f"{stack.web_url}{ours}", stack.auth),
        "reference": (f"{stack.reference_url}{theirs}", their_headers),
    }
    each = TURN_ORDER.count("gateway")  # turns per side, as many for the reference
    turn_sizes = sizes._replace(seconds=sizes.seconds / each, warmup=sizes.warmup / each)
    turns: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    for side in TURN_ORDER:
        url, headers = sides[side]
        turns[side].append(_measured(url, turn_sizes, log, side, headers=headers, **options))
    stack.truncate()
    gateway, ref = _summed(turns["gateway"]), _summed(turns["reference"])
    return {"gateway": gateway, "reference": ref, "ratio": _ratio(gateway["rate"], ref["rate"])}


def _summed(turns: list[dict[str, Any]]) -> dict[str, Any]:
    """One side's turns as one measurement: their counts and seconds summed, the rate of the sum;
    each turn's own figures under ``turns``."""
    names = ("requests", "errors", "ok", "seconds")
    summed = {name: sum(turn[name] for turn in turns) for name in names}
    statuses = sum((Counter(turn["statuses"]) for turn in turns), Counter[str]())
    rate = summed["ok"] / summed["seconds"] if summed["seconds"] else 0.0
    return {**summed, "rate": rate, "statuses": dict(statuses), "turns": turns}


def _submits(stack: Stack, headers: dict[str, str], rate: float = 0, **options: Any) -> LoadResult:
    """Completion submits to the gateway: at ``rate`` a second (open loop), or back to back."""
    url, options = f"{stack.web_url}{SUBMIT_PATH}", {"body": submit_body, **options}
    if rate:
        return run(open_loop(url, rate=rate, headers=headers, ok_statuses=(202,), **options))
    return run(closed_loop(url, headers=headers, **options))


def _backlog(stack: BenchStack, jobs: int, latency_ms: float, log: Log, what: str) -> LoadResult:
    """``jobs`` submitted with the workers stopped, then the workers started."""
    stack.stop_workers()
    stack.truncate()
    stack.set_latency(latency_ms)
    log(f"{what}: {jobs:,} jobs submitted with the workers stopped")
    submitted = _submits(stack, stack.auth, total=jobs, progress=_progress(log, "submitted"))
    log(f"{what}: workers started, upstream latency {latency_ms:g} ms")
    stack.start_workers()
    return submitted


def warm_up(stack: BenchStack, sizes: Sizes, log: Log) -> None:
    """Submits to every route of the gateway, and to the reference, for a while, not measured:
    a stack just started (connections opening, the table's first pages, code paths run once)
    reads lower, and each measurement's own warm-up is too short to absorb that."""
    log("warming up every route, not measured")
    targets = [(f"{stack.web_url}{path}", body, stack.auth) for path, body in (COMPLETION, CHAT)]
    targets.append((f"{stack.reference_url}{JOBS_PATH}", submit_body, JSON))
    for url, body, headers in targets:
        run(closed_loop(url, body=body, headers=headers, duration=2 * sizes.warmup))


def s1_submits(
    stack: BenchStack, sizes: Sizes, log: Log, shape: RequestShape = COMPLETION
) -> dict[str, Any]:
    """Accepted submits/s against the bare reference handler (which stores the same body),
    workers stopped for both."""
    return _versus_reference(stack, sizes, log, "S1", shape.path, JOBS_PATH, body=shape.body)


def s4_polls(
    stack: BenchStack, sizes: Sizes, log: Log, shape: RequestShape = COMPLETION
) -> dict[str, Any]:
    """Polls/s of a completed job against the reference GET of one row by primary key."""
    stack.set_latency(0)
    job_id = request_json(f"{stack.web_url}{shape.path}", shape.body(0), stack.auth)["id"]
    stack.wait_terminal(1, timeout=60)
    if stack.count_where("status = 'completed'") != 1:
        raise RuntimeError("S4: the job to poll did not complete")
    ref_id = request_json(f"{stack.reference_url}{JOBS_PATH}", shape.body(0), JSON)["id"]
    ours, theirs = f"{shape.path}/{job_id}", f"{JOBS_PATH}/{ref_id}"
    get = {"method": "GET", "ok_statuses": (200,)}
    return _versus_reference(stack, sizes, log, "S4", ours, theirs, **get)


def _drain(stack: BenchStack, jobs: int, latency_ms: float, log: Log) -> dict[str, Any]:
    submitted = _backlog(stack, jobs, latency_ms, log, "S2")
    done = stack.wait_terminal(jobs, timeout=600, progress=_progress(log, "finished"))
    # The steady rate: jobs finished between the 10th and the 90th percentile of completion, the
    # workers booting one after the other and the last wave of calls left out.
    completed_at = "extract(epoch FROM completed_at)"
    rows = stack.query(
        f"SELECT extract(epoch FROM max(completed_at) - min(started_at)), count(*), "  # noqa: S608
        f"percentile_cont(0.1) WITHIN GROUP (ORDER BY {completed_at}), "
        f"percentile_cont(0.9) WITHIN GROUP (ORDER BY {completed_at}) "
        f"FROM {JOBS_TABLE} WHERE status IN ('completed', 'failed')"
    )
    seconds, finished, first, last = (float(value or 0) for value in rows[0])
    return {
        "latency_ms": latency_ms,
        "submitted": submitted.ok,
        "finished": int(finished),
        "terminal_seen": done,
        "statuses": stack.count_by(JOBS_TABLE, "status"),
        "seconds": round(seconds, 3),
        "whole_run_jobs_per_s": round(finished / seconds, 1) if seconds else 0.0,
        "jobs_per_s": round(0.8 * finished / (last - first), 1) if last > first else 0.0,
        "upstream": stack.upstream_stats(),
    }


def s2_throughput(stack: BenchStack, sizes: Sizes, log: Log) -> dict[str, Any]:
    """Jobs completed/s draining a backlog, at 1 s and at 0 upstream latency (steady rate)."""
    slow = _drain(stack, sizes.drain_jobs, 1000.0, log)
    fast = _drain(stack, sizes.drain_jobs, 0.0, log)
    return {
        "one_second": slow,
        "zero": fast,
        "ratio": _ratio(slow["jobs_per_s"], fast["jobs_per_s"]),
    }


def s3_added_latency(stack: BenchStack, sizes: Sizes, log: Log) -> dict[str, Any]:
    """completed_at - created_at - upstream latency, at a steady 50 submits/s."""
    latency, seconds = sizes.steady_latency_ms, sizes.steady_seconds
    stack.set_latency(latency)
    log(f"S3: 50 jobs/s for {seconds:g} s, upstream latency {latency:g} ms")
    progress = _progress(log, "submitted")
    submits = _submits(stack, stack.auth, 50.0, duration=seconds, progress=progress)
    stack.wait_terminal(submits.ok, timeout=120, progress=_progress(log, "finished"))
    upstream = latency / 1000
    claim_to_done = stack.percentiles_of("completed_at - started_at", "true", upstream)
    return {
        "rate": 50.0,
        "upstream_latency_ms": latency,
        "submits": submits.to_json(),
        "added_ms": stack.percentiles_of("completed_at - created_at", "true", upstream),
        "parts_ms": {
            "submit_to_claim": stack.percentiles_of("started_at - created_at", "true"),
            "claim_to_done_minus_upstream": claim_to_done,
        },
    }


def s5_memory(stack: BenchStack, sizes: Sizes, log: Log) -> dict[str, Any]:
    """Peak RSS of all worker processes while 1,000 jobs are in flight at 5 s latency."""
    _backlog(stack, sizes.inflight_jobs, 5000, log, "S5")
    time.sleep(0.5)
    baseline = tree_rss_bytes(stack.worker_pids())
    peak = 0

    def sample(done: int) -> None:  # every 0.2 s while the jobs run
        nonlocal peak
        peak = max(peak, tree_rss_bytes(stack.worker_pids()))

    stack.wait_terminal(sizes.inflight_jobs, timeout=180, progress=sample, every=0.2)
    return {
        "jobs": sizes.inflight_jobs,
        "workers": len(stack.worker_pids()),
        "peak_rss_bytes": peak,
        "peak_rss_mib": round(peak / 2**20, 1),
        "rss_half_a_second_after_start_mib": round(baseline / 2**20, 1),
        "peak_in_flight_upstream": stack.upstream_stats().get("peak_in_flight"),
    }


def s6_purge(stack: BenchStack, sizes: Sizes, log: Log) -> dict[str, Any]:
    """Purge of expired rows while submits continue: rows/s and the longest statement."""
    stack.set_latency(0)
    log(f"S6: seeding {sizes.purge_rows:,} expired jobs")
    seed_seconds = seed.seed(stack.config.database_url, seed.EXPIRED, sizes.purge_rows, log)
    log("S6: purging while submits continue (8 connections)")
    submits: list[LoadResult] = []
    with ThreadPoolExecutor(1, thread_name_prefix="purge") as pool:
        # ``manage.py`` as an operator runs the purge, in its own process; it prints a JSON summary.
        purge = pool.submit(stack.manage, "purge_jobs", "--json", "--time-budget", "600")
        while not purge.done():
            load = _submits(stack, stack.auth, connections=8, duration=1.0, ok_statuses=(202,))
            submits.append(load)
            log(f"  purging... {sum(r.ok for r in submits):,} submits accepted meanwhile")
    summary = json.loads(purge.result().strip().splitlines()[-1])  # raises what the purge did
    latencies = [r.latency_ms.get("max", 0.0) for r in submits]
    return {
        "rows_seeded": sizes.purge_rows,
        "seed_seconds": round(seed_seconds, 1),
        "purge": summary,
        "expired_left": stack.count_where("expires_at <= now()"),
        "submits_during": {
            "accepted": sum(r.ok for r in submits),
            "not_accepted": sum(r.requests - r.ok for r in submits),
            "max_latency_ms": round(max(latencies, default=0.0), 1),
        },
    }


def s7_peer(stack: BenchStack, sizes: Sizes, log: Log) -> dict[str, Any]:
    """LiteLLM proxy on the same upstream: background submits/s, completions/s, completed/s."""
    peer_url = peer_litellm.start(stack.procs, stack.config.upstream_url, log)

    def peer(path: str, body: bytes, label: str) -> dict[str, Any]:
        options = {"headers": peer_litellm.HEADERS, "ok_statuses": (200, 202)}
        return _measured(f"{peer_url}{path}", sizes, log, label, body=body, **options)

    stack.set_latency(1000)
    log("S7: peer background submits, upstream latency 1 s")
    body = peer_litellm.background_body(peer_litellm.MODEL)
    background = peer(peer_litellm.RESPONSES_PATH, body, "peer background submits")
    log("S7: gateway submits, workers running, upstream latency 1 s")
    url = f"{stack.web_url}{SUBMIT_PATH}"
    ours = _measured(url, sizes, log, "gateway submits", body=submit_body, headers=stack.auth)
    stack.wait_terminal(ours["ok"], timeout=300, progress=_progress(log, "gateway finished"))
    stack.truncate()
    jobs = sizes.peer_jobs
    log(f"S7: peer completed jobs ({jobs:,}, submit then poll)")
    peer_done = run(peer_litellm.measure_completed(peer_url, model=peer_litellm.MODEL, jobs=jobs))
    log(f"S7: gateway completed jobs ({jobs:,}, submit then poll)")
    follow = submit_and_follow(
        url, submit_body(0), poll_url=lambda job: f"{url}/{job}", headers=stack.auth, jobs=jobs
    )
    ours_done = run(follow)
    stack.truncate()
    stack.set_latency(0)
    log("S7: peer plain /v1/completions, upstream latency 0")
    body = peer_litellm.completion_body(peer_litellm.MODEL)
    plain = peer(peer_litellm.COMPLETIONS_PATH, body, "peer completions")
    stack.procs.stop("peer")
    return {
        "peer_background_submits": background,
        "gateway_submits": ours,
        "submit_ratio": _ratio(ours["rate"], background["rate"]),
        "peer_completed": peer_done,
        "gateway_completed": ours_done,
        "completed_ratio": _ratio(ours_done["completed_per_s"], peer_done["completed_per_s"]),
        "peer_plain_completions": plain,
        "peer_venv": str(peer_litellm.VENV_DIR),
    }


# S8: one key's backlog must not delay another key's jobs. The workers run with room for fewer
# calls than usual (IN_FLIGHT each), so the backlog outlasts the second key's submits (the figure
# counts only if backlog jobs were still pending when its last job ended), and the figure
# measures the claim's order rather than how many calls a second the machine can turn over.
BACKLOG = 20_000
RATE = 10.0  # the second key's submits per second
LATENCY_MS = 1000.0
IN_FLIGHT = 100  # per worker: 2 workers take 200 backlog jobs a second, 100 s for all
FILL_SECONDS = 3.0


def _new_key(stack: Stack, name: str) -> tuple[str, int]:
    """A virtual key made as an operator makes one: (the key, its row id)."""
    key = stack.manage("create_virtual_key", "--name", name).strip().splitlines()[-1]
    # gateway_virtualkey is VirtualKey's table (gateway/access/models.py); no Django here.
    return key, int(stack.query("SELECT id FROM gateway_virtualkey WHERE name = %s", (name,))[0][0])


def s8_fair_share(stack: BenchStack, sizes: Sizes, log: Log) -> dict[str, Any]:
    """The second key's completion latency while the first key's backlog is being worked off."""
    stack.stop_workers()
    stamp = int(time.time())
    _, backlog_key = _new_key(stack, f"s8-backlog-{stamp}")
    steady, steady_key = _new_key(stack, f"s8-steady-{stamp}")
    base = stack.config
    settings = {**base.settings, "GATEWAY_WORKER_MAX_IN_FLIGHT": str(IN_FLIGHT)}
    stack.config = dataclasses.replace(base, settings=settings)
    mine = f"virtual_key_id = {steady_key}"
    try:
        stack.start_workers(ready_with=BENCH_MODEL)
        stack.set_latency(LATENCY_MS)
        log(f"S8: seeding {BACKLOG:,} pending jobs of one key")
        url = stack.config.database_url
        seed_seconds = seed.seed(url, seed.BACKLOG, BACKLOG, log, key=backlog_key)
        time.sleep(FILL_SECONDS)  # the workers fill every slot with the backlog first
        log(f"S8: a second key submits {RATE:g} jobs/s for {sizes.steady_seconds:g} s, latency 1 s")
        headers = {"Authorization": f"Bearer {steady}", **JSON}
        submits = _submits(stack, headers, RATE, duration=sizes.steady_seconds)
        stack.wait_terminal(submits.ok, timeout=300, where=mine)
        backlog_left = stack.count_where(f"virtual_key_id = {backlog_key} AND status = 'pending'")
    finally:
        stack.stop_workers()
        stack.config = base
    return {
        "backlog": BACKLOG,
        "seed_seconds": round(seed_seconds, 2),
        "rate": RATE,
        "seconds": sizes.steady_seconds,
        "upstream_latency_ms": LATENCY_MS,
        "in_flight_per_worker": IN_FLIGHT,
        "submits": submits.to_json(),
        "steady_statuses": stack.count_by(JOBS_TABLE, "status", where=mine),
        "backlog_pending_after": backlog_left,
        "end_to_end_ms": stack.percentiles_of("completed_at - created_at", mine),
        "submit_to_claim_ms": stack.percentiles_of("started_at - created_at", mine),
    }


SCENARIOS: dict[str, Callable[[BenchStack, Sizes, Log], dict[str, Any]]] = {
    "s1": s1_submits,
    "s1chat": lambda stack, sizes, log: s1_submits(stack, sizes, log, CHAT),
    "s4": s4_polls,
    "s4chat": lambda stack, sizes, log: s4_polls(stack, sizes, log, CHAT),
    "s3": s3_added_latency,
    "s2": s2_throughput,
    "s5": s5_memory,
    "s6": s6_purge,
    "s7": s7_peer,
    "s8": s8_fair_share,
}
