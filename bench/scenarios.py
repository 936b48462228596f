"""The benchmark's scenarios S1-S7 (S1 and S4 also for chat completions; S8 is in
``bench/fairness.py``). Each returns its raw figures as a dict for the report.

Every figure that is compared is measured in the same run as what it is compared with (this
machine is shared and noisy), so the targets are ratios or pairs.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import peer_litellm, purge, reference
from harness.load import LoadResult, closed_loop, open_loop, percentiles, run, submit_and_follow
from harness.procs import RssSampler, free_port, tree_rss_bytes, wait_http
from harness.stack import JOBS_TABLE, PYTHON, REPO, Stack, StackConfig, ensure_database

Log = Callable[[str], None]
SUBMIT_PATH = "/v1/async/completions"
BENCH_MODEL = "openai/gpt-bench"
PEER_MODEL = "gpt-bench"
DATABASE_URL = "postgres://root@127.0.0.1:5432/gateway_bench"
REDIS_URL = "redis://127.0.0.1:6379/3"


def bench_config(upstream_url: str) -> StackConfig:
    """The gateway as the benchmark runs it: production services, two workers."""
    return StackConfig(
        database_url=DATABASE_URL,
        var_dir=REPO / ".bench" / "var",
        queue="bench",
        broker_url=REDIS_URL,
        upstream_url=upstream_url,
        workers=2,
        settings={
            # Per worker process. S2's 1 s latency needs room for all its 5,000 jobs at once.
            "GATEWAY_WORKER_MAX_IN_FLIGHT": "4096",
            "GATEWAY_RETRIES": "0",
        },
    )


# The benchmark's key carries every limit and a budget (README, "Limits" and "Budgets and
# spend"), none of them reachable, so that every submit pays for the checks and none is refused.
UNREACHED = str(10**9)
BENCH_KEY_LIMITS = (
    *("--requests-per-minute", UNREACHED, "--tokens-per-minute", UNREACHED),
    *("--max-pending", UNREACHED, "--budget", UNREACHED, "--budget-period", "monthly"),
)


class BenchStack(Stack):
    """The stack, the bare reference handlers beside it, and the job table's figures."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.reference_url = f"http://127.0.0.1:{free_port()}"

    def prepare(self, key_name: str, *key_options: str) -> None:
        ensure_database(self.config.database_url)
        super().prepare(key_name, *(key_options or BENCH_KEY_LIMITS))
        self.truncate()
        reference.setup(self.config.database_url)
        reference.truncate(self.config.database_url)

    def start_reference(self) -> None:
        """As many processes as the gateway's web server."""
        argv = [PYTHON, "-m", "bench.reference", "--port", self.reference_url.rsplit(":", 1)[1]]
        argv += ["--workers", str(self.config.web_processes)]
        argv += ["--database-url", self.config.database_url, "--redis-url", REDIS_URL]
        self.procs.start("reference", argv, cwd=REPO)
        wait_http(f"{self.reference_url}/health", log=self.procs.log_path("reference"))

    def counts(self) -> dict[str, int]:
        rows = self.query(f"SELECT status, count(*) FROM {JOBS_TABLE} GROUP BY status")  # noqa: S608
        return {status: int(n) for status, n in rows}

    def drain_window(self) -> tuple[float, int]:
        """Seconds from the first claim to the last terminal write, and the jobs finished."""
        rows = self.query(
            f"SELECT extract(epoch FROM max(completed_at) - min(started_at)), count(*) "  # noqa: S608
            f"FROM {JOBS_TABLE} WHERE status IN ('completed', 'failed')"
        )
        seconds, count = rows[0]
        return float(seconds or 0.0), int(count)

    def steady_rate(self) -> float:
        """Jobs finished per second between the 10th and the 90th percentile of completion:
        the workers booting one after the other and the last wave of calls are left out."""
        rows = self.query(
            "SELECT percentile_cont(0.1) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at)), "  # noqa: S608
            "percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at)), "
            f"count(*) FROM {JOBS_TABLE} WHERE status IN ('completed', 'failed')"
        )
        first, last, count = rows[0]
        if not count or first is None or last <= first:
            return 0.0
        return 0.8 * int(count) / (float(last) - float(first))

    def latency_parts_ms(self, upstream_ms: float) -> dict[str, list[float]]:
        """Per completed job: created to claimed, claimed to written less the upstream's
        latency, and created to written less it (the added latency)."""
        rows = self.query(
            f"SELECT extract(epoch FROM started_at - created_at) * 1000, "  # noqa: S608
            f"extract(epoch FROM completed_at - started_at) * 1000 "
            f"FROM {JOBS_TABLE} WHERE status = 'completed'"
        )
        return {
            "added": [float(a) + float(b) - upstream_ms for a, b in rows],
            "submit_to_claim": [float(a) for a, _ in rows],
            "claim_to_done_minus_upstream": [float(b) - upstream_ms for _, b in rows],
        }

    def completed_job_id(self) -> str | None:
        rows = self.query(f"SELECT id FROM {JOBS_TABLE} WHERE status = 'completed' LIMIT 1")  # noqa: S608
        return str(rows[0][0]) if rows else None


@dataclass(frozen=True)
class Sizes:
    """How long and how large each scenario is: ``full`` for the record, ``quick`` to check."""

    seconds: float  # each closed-loop measurement (S1, S4, S7)
    warmup: float
    drain_jobs: int  # S2
    steady_seconds: float  # S3, and S8's submits
    steady_latency_ms: float
    inflight_jobs: int  # S5
    purge_rows: int  # S6
    peer_jobs: int  # S7 completed

    @classmethod
    def full(cls) -> Sizes:
        return cls(15.0, 3.0, 5000, 30.0, 1000.0, 1000, 1_000_000, 1000)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(2.5, 0.5, 1500, 6.0, 200.0, 1000, 100_000, 300)


def submit_body(n: int) -> bytes:
    return json.dumps(
        {"model": BENCH_MODEL, "prompt": f"Say hello to job {n}", "max_tokens": 16}
    ).encode()


def chat_body(n: int) -> bytes:
    return json.dumps(
        {
            "model": BENCH_MODEL,
            "messages": [
                {"role": "system", "content": "You are brief."},
                {"role": "user", "content": f"Say hello to job {n}"},
            ],
            "max_tokens": 16,
        }
    ).encode()


@dataclass(frozen=True)
class RequestShape:
    """A request type as the benchmark submits it: its route and a body per job number."""

    path: str
    body: Callable[[int], bytes]


COMPLETION = RequestShape(SUBMIT_PATH, submit_body)
CHAT = RequestShape("/v1/async/chat/completions", chat_body)


def _progress(log: Log, label: str) -> Callable[[int], None]:
    return lambda done: log(f"  {label}: {done:,}")


def _measured(url: str, sizes: Sizes, log: Log, label: str, **options: Any) -> dict[str, Any]:
    """One measured closed loop: 64 keep-alive connections for the scenario's duration."""
    load = closed_loop(
        url,
        duration=sizes.seconds,
        warmup=sizes.warmup,
        progress=_progress(log, label),
        **{"ok_statuses": (202,), **options},
    )
    return run(load).to_json()


def _submit_jobs(
    stack: Stack, count: int, log: Log, shape: RequestShape = COMPLETION
) -> LoadResult:
    url = f"{stack.web_url}{shape.path}"
    progress = _progress(log, "submitted")
    load = closed_loop(url, body=shape.body, headers=stack.auth, total=count, progress=progress)
    return run(load)


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else 0.0


def _against(ours: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    return {
        "gateway": ours,
        "reference": reference,
        "ratio": _ratio(ours["rate"], reference["rate"]),
    }


def warm_up(stack: BenchStack, sizes: Sizes, log: Log) -> None:
    """Submits to every route of the gateway, and to the reference, for a while, not measured.

    Whichever scenario came first used to measure a stack just started (connections opening,
    the table's first pages, code paths run once) and read about a tenth lower than the same
    scenario run second; each measurement's own warm-up is too short to absorb that.
    """
    log("warming up every route, not measured")
    targets = [
        (f"{stack.web_url}{shape.path}", shape.body, stack.auth) for shape in (COMPLETION, CHAT)
    ]
    targets.append(
        (f"{stack.reference_url}/ref/jobs", COMPLETION.body, {"Content-Type": "application/json"})
    )
    for url, body, headers in targets:
        run(closed_loop(url, body=body, headers=headers, duration=2 * sizes.warmup))
    stack.truncate()


# --- S1 -------------------------------------------------------------------------------------------
def s1_submits(
    stack: BenchStack, sizes: Sizes, log: Log, shape: RequestShape = COMPLETION
) -> dict[str, Any]:
    """Accepted submits/s against the bare reference handler (which stores the same body),
    workers stopped for both."""
    stack.truncate()
    log(f"S1: gateway submits to {shape.path} (64 connections)")
    url = f"{stack.web_url}{shape.path}"
    ours = _measured(url, sizes, log, "gateway submits", body=shape.body, headers=stack.auth)
    log("S1: reference submits (64 connections)")
    ref = _measured(
        f"{stack.reference_url}/ref/jobs",
        sizes,
        log,
        "reference submits",
        body=shape.body,
        headers={"Content-Type": "application/json"},
    )
    stack.truncate()
    return _against(ours, ref)


# --- S2 -------------------------------------------------------------------------------------------
def _drain(stack: BenchStack, jobs: int, latency_ms: float, log: Log) -> dict[str, Any]:
    stack.stop_workers()
    stack.truncate()
    stack.set_latency(latency_ms)
    log(f"S2: {jobs:,} jobs submitted with the workers stopped")
    submitted = _submit_jobs(stack, jobs, log)
    log(f"S2: workers started, upstream latency {latency_ms:g} ms")
    stack.start_workers()
    done = stack.wait_terminal(jobs, timeout=600, progress=_progress(log, "finished"))
    seconds, finished = stack.drain_window()
    counts = stack.counts()
    return {
        "latency_ms": latency_ms,
        "submitted": submitted.ok,
        "finished": finished,
        "terminal_seen": done,
        "statuses": counts,
        "seconds": round(seconds, 3),
        "whole_run_jobs_per_s": round(finished / seconds, 1) if seconds else 0.0,
        "jobs_per_s": round(stack.steady_rate(), 1),
        "upstream": stack.upstream_stats(),
    }


def s2_throughput(stack: BenchStack, sizes: Sizes, log: Log) -> dict[str, Any]:
    """Jobs completed/s draining a backlog, at 1 s and at 0 upstream latency (steady rate)."""
    slow = _drain(stack, sizes.drain_jobs, 1000.0, log)
    fast = _drain(stack, sizes.drain_jobs, 0.0, log)
    stack.truncate()
    return {
        "one_second": slow,
        "zero": fast,
        "ratio": _ratio(slow["jobs_per_s"], fast["jobs_per_s"]),
    }


# --- S3 -------------------------------------------------------------------------------------------
def s3_added_latency(stack: BenchStack, sizes: Sizes, log: Log) -> dict[str, Any]:
    """completed_at - created_at - upstream latency, at a steady 50 submits/s."""
    stack.truncate()
    stack.set_latency(sizes.steady_latency_ms)
    log(
        f"S3: 50 jobs/s for {sizes.steady_seconds:g} s, "
        f"upstream latency {sizes.steady_latency_ms:g} ms"
    )
    load = run(
        open_loop(
            f"{stack.web_url}{SUBMIT_PATH}",
            rate=50.0,
            duration=sizes.steady_seconds,
            body=submit_body,
            headers=stack.auth,
            ok_statuses=(202,),
            progress=_progress(log, "submitted"),
        )
    )
    stack.wait_terminal(load.ok, timeout=120, progress=_progress(log, "finished"))
    parts = stack.latency_parts_ms(sizes.steady_latency_ms)
    figures = {name: _rounded(percentiles(values)) for name, values in parts.items()}
    stack.truncate()
    return {
        "rate": 50.0,
        "upstream_latency_ms": sizes.steady_latency_ms,
        "submits": load.to_json(),
        "added_ms": figures.pop("added"),
        "parts_ms": figures,
    }


def _rounded(figures: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 2) for name, value in figures.items()}


# --- S4 -------------------------------------------------------------------------------------------
def s4_polls(
    stack: BenchStack, sizes: Sizes, log: Log, shape: RequestShape = COMPLETION
) -> dict[str, Any]:
    """Polls/s of a completed job against the reference GET of one row by primary key."""
    stack.truncate()
    stack.set_latency(0)
    _submit_jobs(stack, 1, log, shape)
    stack.wait_terminal(1, timeout=60, progress=lambda _: None)
    job_id = stack.completed_job_id()
    if job_id is None:
        raise RuntimeError("S4: the job to poll did not complete")
    log(f"S4: gateway polls of a completed job at {shape.path}")
    ours = _measured(
        f"{stack.web_url}{shape.path}/{job_id}",
        sizes,
        log,
        "gateway polls",
        method="GET",
        headers=stack.auth,
        ok_statuses=(200,),
    )
    ref_id: list[str] = []
    run(
        closed_loop(
            f"{stack.reference_url}/ref/jobs",
            body=shape.body,
            headers={"Content-Type": "application/json"},
            connections=1,
            total=1,
            on_response=lambda n, status, body: ref_id.append(json.loads(body)["id"]),
        )
    )
    log("S4: reference GETs")
    ref = _measured(
        f"{stack.reference_url}/ref/jobs/{ref_id[0]}",
        sizes,
        log,
        "reference GETs",
        method="GET",
        ok_statuses=(200,),
    )
    stack.truncate()
    return _against(ours, ref)


def s1_chat_submits(stack: BenchStack, sizes: Sizes, log: Log) -> dict[str, Any]:
    return s1_submits(stack, sizes, log, CHAT)


def s4_chat_polls(stack: BenchStack, sizes: Sizes, log: Log) -> dict[str, Any]:
    return s4_polls(stack, sizes, log, CHAT)


# --- S5 -------------------------------------------------------------------------------------------
def s5_memory(stack: BenchStack, sizes: Sizes, log: Log) -> dict[str, Any]:
    """Peak RSS of all worker processes while 1,000 jobs are in flight at 5 s latency."""
    stack.stop_workers()
    stack.truncate()
    stack.set_latency(5000)
    log(f"S5: {sizes.inflight_jobs:,} jobs submitted, then the workers started; 5 s latency")
    _submit_jobs(stack, sizes.inflight_jobs, log)
    stack.start_workers()
    time.sleep(0.5)
    baseline = tree_rss_bytes(stack.worker_pids())
    sampler = RssSampler(stack.worker_pids).start()
    stack.wait_terminal(sizes.inflight_jobs, timeout=180, progress=_progress(log, "finished"))
    peak = sampler.stop()
    upstream = stack.upstream_stats()
    stack.truncate()
    return {
        "jobs": sizes.inflight_jobs,
        "workers": len(stack.worker_pids()),
        "peak_rss_bytes": peak,
        "peak_rss_mib": round(peak / 2**20, 1),
        "rss_half_a_second_after_start_mib": round(baseline / 2**20, 1),
        "peak_in_flight_upstream": upstream.get("peak_in_flight"),
    }


# --- S6 -------------------------------------------------------------------------------------------
def s6_purge(stack: BenchStack, sizes: Sizes, log: Log) -> dict[str, Any]:
    """Purge of expired rows while submits continue: rows/s and the longest statement."""
    stack.truncate()
    stack.set_latency(0)
    log(f"S6: seeding {sizes.purge_rows:,} expired jobs")
    seed_seconds = purge.seed_expired(stack.config.database_url, sizes.purge_rows, log=log)
    summary: dict[str, Any] = {}
    failure: list[BaseException] = []

    def purge_now() -> None:
        try:
            summary.update(json.loads(stack.manage(*purge.COMMAND).strip().splitlines()[-1]))
        except BaseException as exc:  # reported, not swallowed
            failure.append(exc)

    log("S6: purging while submits continue (8 connections)")
    thread = threading.Thread(target=purge_now, name="purge")
    thread.start()
    submits: list[LoadResult] = []
    while thread.is_alive():
        submits.append(
            run(
                closed_loop(
                    f"{stack.web_url}{SUBMIT_PATH}",
                    body=submit_body,
                    headers=stack.auth,
                    connections=8,
                    duration=1.0,
                    ok_statuses=(202,),
                )
            )
        )
        log(f"  purging... {sum(r.ok for r in submits):,} submits accepted meanwhile")
    thread.join()
    if failure:
        raise failure[0]
    left = purge.count_expired(stack.config.database_url)
    stack.truncate()
    accepted = sum(r.ok for r in submits)
    other = sum(r.requests - r.ok for r in submits)
    latencies = [r.latency_ms.get("max", 0.0) for r in submits]
    return {
        "rows_seeded": sizes.purge_rows,
        "seed_seconds": round(seed_seconds, 1),
        "purge": summary,
        "expired_left": left,
        "submits_during": {
            "accepted": accepted,
            "not_accepted": other,
            "max_latency_ms": round(max(latencies, default=0.0), 1),
        },
    }


# --- S7 -------------------------------------------------------------------------------------------
def s7_peer(stack: BenchStack, sizes: Sizes, log: Log) -> dict[str, Any]:
    """LiteLLM proxy on the same upstream: background submits/s, completions/s, completed/s."""
    python = peer_litellm.ensure_venv(peer_litellm.VENV_DIR_DEFAULT, log=log)
    port = free_port()
    config = REPO / ".bench" / "litellm-config.yaml"
    peer_litellm.write_config(
        config,
        upstream_url=stack.config.upstream_url,
        model=PEER_MODEL,
        redis_url=peer_litellm.REDIS_URL_DEFAULT,
    )
    argv, env = peer_litellm.command(python, port=port, config=config)
    peer_url = f"http://127.0.0.1:{port}"
    log("S7: starting the LiteLLM proxy")
    stack.procs.start("peer", argv, env=env, cwd=REPO / ".bench")
    wait_http(
        f"{peer_url}{peer_litellm.HEALTH_PATH}", timeout=180, log=stack.procs.log_path("peer")
    )
    stack.truncate()
    stack.set_latency(1000)
    headers = peer_litellm.auth_headers()

    def peer_load(path: str, body: bytes, label: str) -> dict[str, Any]:
        url = f"{peer_url}{path}"
        return _measured(url, sizes, log, label, body=body, headers=headers, ok_statuses=(200, 202))

    log("S7: peer background submits, upstream latency 1 s")
    background = peer_load(
        peer_litellm.RESPONSES_PATH,
        peer_litellm.background_submit_body(PEER_MODEL, "Say hello to the benchmark."),
        "peer background submits",
    )
    log("S7: gateway submits, workers running, upstream latency 1 s")
    ours_submits = _measured(
        f"{stack.web_url}{SUBMIT_PATH}",
        sizes,
        log,
        "gateway submits",
        body=submit_body,
        headers=stack.auth,
    )
    stack.wait_terminal(
        ours_submits["ok"], timeout=300, progress=_progress(log, "gateway finished")
    )
    stack.truncate()
    log(f"S7: peer completed jobs ({sizes.peer_jobs:,}, submit then poll)")
    peer_done = run(
        peer_litellm.measure_completed(peer_url, model=PEER_MODEL, jobs=sizes.peer_jobs)
    )
    log(f"S7: gateway completed jobs ({sizes.peer_jobs:,}, submit then poll)")
    ours_done = run(
        submit_and_follow(
            f"{stack.web_url}{SUBMIT_PATH}",
            submit_body(0),
            poll_url=lambda job_id: f"{stack.web_url}{SUBMIT_PATH}/{job_id}",
            headers=stack.auth,
            jobs=sizes.peer_jobs,
        )
    )
    stack.truncate()
    stack.set_latency(0)
    log("S7: peer plain /v1/completions, upstream latency 0")
    plain = peer_load(
        peer_litellm.COMPLETIONS_PATH,
        peer_litellm.completion_body(PEER_MODEL, "Say hello to the benchmark."),
        "peer completions",
    )
    stack.procs.stop("peer")
    return {
        "peer_background_submits": background,
        "gateway_submits": ours_submits,
        "submit_ratio": _ratio(ours_submits["rate"], background["rate"]),
        "peer_completed": peer_done,
        "gateway_completed": ours_done,
        "completed_ratio": _ratio(
            ours_done["completed_per_s"], float(peer_done.get("completed_per_s") or 0.0)
        ),
        "peer_plain_completions": plain,
        "peer_venv": str(Path(python).parent.parent),
    }
