"""The drill's scenarios 1-8: one fault each, with every accepted job accounted for.

Each returns the ledger's counts (``drill.ledger``), its own figures, its own conditions by name
(``checks``) and ``passed``: 0 lost, 0 duplicated, no job charged twice and every check held
(``drill.observe.verdict``).
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drill.ledger import Ledger
from drill.observe import MODEL, Client, Drill, at, observe, submit_body, verdict
from drill.webhooks import PATH, WebhookReceiver
from harness.load import closed_loop
from harness.load import run as run_async
from harness.procs import free_port
from harness.stack import JOBS_TABLE, WORKER_STOP_SECONDS
from harness.upstream import FAULTS

DEADLINE = 120.0  # seconds after the load (and its faults) for every accepted job to finish
SUBMIT_RATE = 50.0
POLL_RATE = 20.0  # polls per second of one job during the Postgres restart
FAULT_JOBS = 5  # per fault mode
MIB = 2**20
Load = Callable[[Client], Awaitable[None]]


@dataclass(frozen=True)
class Sizes:
    """The soak's length: a short default run, or ``--long``."""

    max_rate_seconds: float
    soak_seconds: float


SHORT = Sizes(max_rate_seconds=8.0, soak_seconds=75.0)
LONG = Sizes(max_rate_seconds=15.0, soak_seconds=600.0)


# --- shared steps -------------------------------------------------------------------------------
def _observed(drill: Drill, label: str, latency_ms: float, load: Load, deadline: float) -> Ledger:
    """A scenario's run: empty tables, the upstream's latency, then ``observe`` its load."""
    drill.clear_jobs()
    drill.stack.set_latency(latency_ms)
    return run_async(observe(drill, label, load, deadline))


async def _steady_with_faults(
    client: Client, label: str, seconds: float, faults: list[tuple[float, Callable[[], Any], str]]
) -> list[float]:
    """``SUBMIT_RATE`` submits a second for ``seconds`` while each fault runs ``delay`` seconds
    after the one before it ended; when each ended (``time.time()``)."""
    drill = client.drill

    async def in_turn() -> list[float]:
        return [await at(delay, action, drill.log, what) for delay, action, what in faults]

    submits = client.submit(drill.marker(label), MODEL, round(SUBMIT_RATE * seconds), SUBMIT_RATE)
    _, times = await asyncio.gather(submits, in_turn())
    return times


async def _wait_for(ready: Callable[[], bool], seconds: float, every: float = 0.25) -> float | None:
    """Ask ``ready`` (in a thread) for up to ``seconds``; how long it took, or None."""
    started = time.monotonic()
    while not await asyncio.to_thread(ready):
        if time.monotonic() - started > seconds:
            return None
        await asyncio.sleep(every)
    return round(time.monotonic() - started, 1)


def _everything_completed(summary: dict[str, Any]) -> dict[str, bool]:
    return {
        "every_submit_accepted": summary["accepted"] == summary["submitted"],
        "every_job_completed": summary["completed"] == summary["accepted"],
    }


# --- 1 ------------------------------------------------------------------------------------------
def s1_worker_killed(drill: Drill, sizes: Sizes) -> dict[str, Any]:
    """kill -9 a worker with 200 jobs in flight (3 s upstream); a new one starts at once."""
    stack, jobs = drill.stack, 200
    stack.procs.stop("worker-1")  # one worker left, so it holds every job when it dies
    held: dict[str, Any] = {}

    async def load(client: Client) -> None:
        await client.submit(drill.marker("s1"), MODEL, jobs)

        def all_in_flight() -> bool:  # every job mid-call at the upstream
            held["processing"] = stack.count_where("status = 'processing'")
            held["upstream_in_flight"] = stack.upstream_stats()["in_flight"]
            return held["processing"] >= jobs and held["upstream_in_flight"] >= jobs

        await _wait_for(all_in_flight, 30, every=0.1)
        held["killed_at"] = time.time()
        drill.log(f"  fault: kill -9 worker-0 holding {held['processing']} jobs")
        stack.kill_worker(0)
        stack.start_worker(0)

    summary = _observed(drill, "s1", 3000, load, DEADLINE).summary()
    last = stack.query(f"SELECT extract(epoch FROM max(completed_at)) FROM {JOBS_TABLE}")[0][0]  # noqa: S608
    held["last_completed_after_s"] = round(float(last or 0) - held.pop("killed_at"), 1)
    attempts = stack.count_by(JOBS_TABLE, "attempts")
    stack.start_worker(1)
    checks = {
        "all_in_flight_at_kill": held["processing"] == jobs,
        "all_completed": summary["completed"] == jobs,
        "all_claimed_again": sum(n for a, n in attempts.items() if int(a) >= 2) == jobs,
    }
    return verdict(summary, checks) | {"at_kill": held, "attempts": attempts}


# --- 2 ------------------------------------------------------------------------------------------
def _last_critical(drill: Drill, name: str) -> str | None:
    """The last CRITICAL line of a process's log: why a Celery worker gave up."""
    path = drill.stack.procs.log_path(name)
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return next((line for line in reversed(lines) if " CRITICAL " in line), None)


def s2_redis_down(drill: Drill, sizes: Sizes) -> dict[str, Any]:
    """Redis stopped for 30 s while 50 jobs/s are submitted."""
    before, outage, after = 5.0, 30.0, 10.0
    times: list[float] = []

    async def load(client: Client) -> None:
        faults = [(before, drill.redis.stop, "Redis stopped")]
        faults.append((outage, drill.redis.start, "Redis started"))
        times.extend(await _steady_with_faults(client, "s2", before + outage + after, faults))

    summary = _observed(drill, "s2", 200, load, DEADLINE).summary()
    down, up = times
    during = drill.stack.count_where(
        "completed_at BETWEEN to_timestamp(%s) AND to_timestamp(%s)", (down, up)
    )
    dead = [f"worker-{n}" for n in range(2) if not drill.stack.procs.alive(f"worker-{n}")]
    checks = {**_everything_completed(summary), "workers_alive": not dead}
    return verdict(summary, checks) | {
        "outage_seconds": round(up - down, 1),
        "completed_during_outage": during,
        "dead_workers_last_critical_line": {name: _last_critical(drill, name) for name in dead},
    }


# --- 3 ------------------------------------------------------------------------------------------
def s3_postgres_restart(drill: Drill, sizes: Sizes) -> dict[str, Any]:
    """Postgres stopped (fast shutdown), down 5 s, started again, while 50 jobs/s are submitted."""
    before, down, after = 10.0, 5.0, 25.0
    seen: dict[str, Any] = {}

    async def load(client: Client) -> None:
        await client.submit(drill.marker("s3-polled"), MODEL, 1)
        polled = client.ledger.accepted_ids()[0]
        faults = [(before, drill.postgres.stop, "Postgres stopped")]
        faults.append((down, drill.postgres.start, "Postgres started"))
        seconds = before + down + after
        seen["times"], seen["polls"] = await asyncio.gather(
            _steady_with_faults(client, "s3", seconds, faults),
            client.poll_at_rate(polled, POLL_RATE, seconds),
        )

    ledger = _observed(drill, "s3", 200, load, DEADLINE)
    summary = ledger.summary()
    (stopped, started), polls = seen["times"], seen["polls"]
    answers = [s for s in ledger.submissions.values() if s.answered_at is not None]
    last_refusal = max((s.answered_at or 0 for s in answers if not s.accepted), default=stopped)
    recovered_after = round(last_refusal - started, 1)
    checks = {
        "refused_only_with_503": set(summary["refused"]) <= {"503"},
        "polls_answered_200_202_or_503": set(polls) <= {"200", "202", "503"},
        "refusals_in_the_error_shape": summary["refused_not_in_error_shape"] == 0,
        "no_refused_submit_created_a_job": summary["created_without_202"]["after_refusal"] == 0,
        "every_job_completed": summary["completed"] == summary["accepted"],
        "accepted_again_after_restart": any(
            s.accepted and (s.answered_at or 0) >= started + 10 for s in answers
        ),
        "all_accepted_within_10_s": recovered_after < 10,
    }
    return verdict(summary, checks) | {
        "down_seconds": round(started - stopped, 1),
        "last_refusal_after_restart_s": recovered_after,
        "polls_of_one_job": polls,
    }


# --- 4 ------------------------------------------------------------------------------------------
def s4_web_restart(drill: Drill, sizes: Sizes) -> dict[str, Any]:
    """The web server stopped (SIGTERM) and started again while 50 jobs/s are submitted."""
    before, total = 10.0, 30.0
    times: list[float] = []

    async def load(client: Client) -> None:
        started = time.time()
        faults = [(before, drill.stack.restart_web, "web server restarting")]
        times.extend(await _steady_with_faults(client, "s4", total, faults))
        times.append(times[0] - started - before)

    summary = _observed(drill, "s4", 200, load, DEADLINE).summary()
    checks = {
        "every_answer_202": not summary["refused"],
        "every_job_completed": summary["completed"] == summary["accepted"],
    }
    return verdict(summary, checks) | {
        "restart_seconds": round(times[-1], 1),
        "unanswered_that_created_a_job": summary["created_without_202"]["after_no_answer"],
        "of_which_unfinished": summary["created_without_202"]["unfinished"],
    }


# --- 5 ------------------------------------------------------------------------------------------
def _by_fault(ledger: Ledger, drill: Drill) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in FAULTS:
        prefix = f"{drill.marker('s5')}-{name}-"
        seen = [
            outcome
            for marker, s in ledger.submissions.items()
            if marker.startswith(prefix) and s.job_id and (outcome := ledger.final.get(s.job_id))
        ]
        out[name] = {
            "statuses": sorted({o.status for o in seen}),
            "status_codes": sorted({o.status_code for o in seen if o.status_code}),
            "error_codes": sorted({o.error_code for o in seen if o.error_code}),
            "message": next((o.error_message for o in seen if o.error_message), None),
        }
    return out


def s5_bad_upstreams(drill: Drill, sizes: Sizes) -> dict[str, Any]:
    """Upstreams that hang, send invalid JSON, a wrong content type, half a body, or hang up."""
    procs, normal_after = drill.stack.procs, 50
    pids_before = {n: procs.pids(f"worker-{n}") for n in range(2)}

    async def load(client: Client) -> None:
        marker = drill.marker("s5")
        await asyncio.gather(
            *(client.submit(f"{marker}-{f}", f"openai/{f}", FAULT_JOBS) for f in FAULTS)
        )
        await client.wait_seen(time.monotonic() + DEADLINE, "s5 faults")
        await client.submit(drill.marker("s5-normal"), MODEL, normal_after)

    ledger = _observed(drill, "s5", 0, load, DEADLINE)
    summary = ledger.summary()
    per_fault = _by_fault(ledger, drill)
    pids_after = {n: procs.pids(f"worker-{n}") for n in range(2)}
    checks = {
        "same_worker_processes": pids_after == pids_before and all(pids_after.values()),
        "every_fault_job_failed_with_a_code": all(
            f["statuses"] == ["failed"] and f["error_codes"] for f in per_fault.values()
        ),
        "normal_jobs_completed_after": summary["completed"] == normal_after,
    }
    return verdict(summary, checks) | {"faults": per_fault}


# --- 6 ------------------------------------------------------------------------------------------
def _max_submit_rate(drill: Drill, seconds: float) -> float:
    prefix = drill.marker("s6-max")
    load = closed_loop(
        f"{drill.stack.web_url}/v1/async/completions",
        body=lambda n: submit_body(f"{prefix}-{n}", MODEL),
        headers=drill.stack.auth,
        duration=seconds,
        warmup=2.0,
        ok_statuses=(202,),
    )
    return run_async(load).rate


def _growth(samples: list[tuple[float, int]], warm_until: float) -> dict[str, float]:
    """RSS at the end of warm-up and at the end (medians of 6 s), and the growth between."""
    end_time = samples[-1][0]
    warm = [rss for t, rss in samples if warm_until - 6 <= t <= warm_until]
    last = [rss for t, rss in samples if t >= end_time - 6]
    start_mib = statistics.median(warm) / MIB
    end_mib = statistics.median(last) / MIB
    return {
        "after_warmup_mib": round(start_mib, 1),
        "end_mib": round(end_mib, 1),
        "growth": round(end_mib / start_mib - 1, 4),
    }


def s6_soak(drill: Drill, sizes: Sizes) -> dict[str, Any]:
    """Half the maximum submit rate (measured just before) for the soak's length."""
    drill.clear_jobs()
    drill.stack.set_latency(200)
    drill.log(f"  measuring the maximum submit rate ({sizes.max_rate_seconds:g} s, 64 connections)")
    max_rate = _max_submit_rate(drill, sizes.max_rate_seconds)
    unfinished = "status IN ('pending', 'processing')"
    run_async(_wait_for(lambda: drill.stack.count_where(unfinished) == 0, 180.0, every=1.0))
    left = drill.stack.count_where(unfinished)
    drill.log(f"  maximum {max_rate:.0f} submits/s; its jobs drained ({left} left)")
    rate, warmup = max_rate / 2, sizes.soak_seconds / 4
    samples: dict[str, list[tuple[float, int]]] = {"web": [], "workers": []}

    async def sample_rss(started: float) -> None:
        while True:
            now = time.monotonic() - started
            samples["web"].append((now, drill.rss("web")))
            samples["workers"].append((now, drill.rss("worker-")))
            await asyncio.sleep(2.0)

    async def load(client: Client) -> None:
        sampler = asyncio.create_task(sample_rss(time.monotonic()))
        try:
            await client.submit(drill.marker("s6"), MODEL, round(rate * sizes.soak_seconds), rate)
        finally:
            sampler.cancel()

    drill.log(f"  soak: {rate:.0f} submits/s for {sizes.soak_seconds:g} s (warm-up {warmup:g} s)")
    # A backlog the workers build up while the soak runs is drained afterwards: the deadline
    # grows with the soak, and a stuck job still shows as lost.
    summary = _observed(drill, "s6", 200, load, DEADLINE + sizes.soak_seconds).summary()
    memory = {name: _growth(points, warmup) for name, points in samples.items()}
    checks = {
        **_everything_completed(summary),
        "rss_flat_after_warmup": all(m["growth"] <= 0.10 for m in memory.values()),
    }
    return verdict(summary, checks) | {
        "max_submit_rate": round(max_rate, 1),
        "soak_rate": round(rate, 1),
        "soak_seconds": sizes.soak_seconds,
        "warmup_seconds": warmup,
        "max_rate_jobs_left_undrained": left,
        "memory": memory,
    }


# --- 7 ------------------------------------------------------------------------------------------
ENGINE_STARTED = re.compile(r"job engine (\S+) started")
# Celery's consumer, each time it fails to reach the broker (an ERROR line, at any log level).
BROKER_REFUSED = re.compile(r"consumer: Cannot connect to redis://")
# Celery's INFO line once its consumer is connected: "<queue>-<n>@<host> ready."
WORKER_READY = re.compile(r"@\S+ ready\.")
# The web process, when a bell for a committed job could not be published.
BELLS_NOT_RUNG = re.compile(r"broker unavailable, \d+ bells not rung")


@dataclass(frozen=True)
class WorkerSaid:
    """What a Celery worker's log says about its engine and its broker."""

    engines: tuple[str, ...]  # ids of the job engines it started, in order
    broker_refused: int  # lines saying the broker could not be reached
    ready: int  # lines saying the worker is consuming from the broker

    @classmethod
    def read(cls, text: str) -> WorkerSaid:
        return cls(
            engines=tuple(ENGINE_STARTED.findall(text)),
            broker_refused=len(BROKER_REFUSED.findall(text)),
            ready=len(WORKER_READY.findall(text)),
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "engines_started": len(self.engines),
            "broker_refused_lines": self.broker_refused,
            "ready_lines": self.ready,
        }


def bells_not_rung(text: str) -> int:
    return len(BELLS_NOT_RUNG.findall(text))


@dataclass(frozen=True)
class LogWindow:
    """A log file from the size it had when the window was opened: an earlier scenario's outage
    left the same lines in the process logs, which grow over the whole run."""

    path: Path
    start: int

    @classmethod
    def from_now(cls, path: Path) -> LogWindow:
        return cls(path, path.stat().st_size if path.exists() else 0)

    def text(self) -> str:
        if not self.path.exists():
            return ""
        with self.path.open("rb") as log:
            log.seek(self.start)
            return log.read().decode(errors="replace")


BROKERLESS_JOBS = 200
AFTER_BROKER_JOBS = 10
PENDING_WAIT = 5.0  # seconds; longer than the engines' poll interval
BROKERLESS_DEADLINE = 60.0  # seconds from the worker's start for the jobs to complete
READY_DEADLINE = 60.0  # Celery retries the broker at growing intervals, up to 30 s apart
LOG_LINE_WAIT = 10.0  # for a line the worker may write just after its jobs are done
# docker-compose.yml's worker logs at INFO: the engine's start and Celery's "ready." line with it.
PRODUCTION_LOG_LEVEL = "INFO"


def s7_worker_without_broker(drill: Drill, sizes: Sizes) -> dict[str, Any]:
    """Both workers stopped, then Redis; 200 jobs submitted; one worker started with Redis still
    down runs them from the table, then 10 more once Redis is back."""
    stack, jobs = drill.stack, BROKERLESS_JOBS
    figures: dict[str, Any] = {}

    async def load(client: Client) -> None:
        figures["worker_exit_codes"] = await asyncio.to_thread(stack.stop_workers)
        drill.log(f"  both workers stopped (SIGTERM): exit codes {figures['worker_exit_codes']}")
        await at(0, drill.redis.stop, drill.log, "Redis stopped")
        web = LogWindow.from_now(stack.procs.log_path("web"))
        await client.submit(drill.marker("s7"), MODEL, jobs, SUBMIT_RATE)
        await asyncio.sleep(PENDING_WAIT)
        figures["web_bells_not_rung_lines"] = bells_not_rung(web.text())
        figures["pending_after_wait"] = stack.count_where("status = 'pending' AND attempts = 0")
        drill.log(f"  {figures['pending_after_wait']} jobs pending; one worker starts, no Redis")
        worker = LogWindow.from_now(stack.procs.log_path("worker-0"))
        started = time.monotonic()
        await asyncio.to_thread(stack.start_worker, 0, PRODUCTION_LOG_LEVEL)
        all_seen = await client.wait_seen(started + BROKERLESS_DEADLINE, "s7 no broker")
        figures["completed_after_worker_start_s"] = (
            round(time.monotonic() - started, 1) if all_seen else None
        )
        # The engine may finish the jobs before the consumer has said it cannot connect.
        await _wait_for(lambda: WorkerSaid.read(worker.text()).broker_refused > 0, LOG_LINE_WAIT)
        figures["worker_log_while_down"] = WorkerSaid.read(worker.text())
        figures["claims"] = stack.count_by(JOBS_TABLE, "claimed_by", "attempts")
        figures["upstream_calls"] = stack.upstream_stats()["requests"]
        await at(0, drill.redis.start, drill.log, "Redis started")
        await client.submit(drill.marker("s7-after"), MODEL, AFTER_BROKER_JOBS)
        ready = lambda: WorkerSaid.read(worker.text()).ready > 0  # noqa: E731
        figures["ready_after_redis_s"] = await _wait_for(ready, READY_DEADLINE)

    try:
        summary = _observed(drill, "s7", 200, load, DEADLINE).summary()
    finally:
        # The next scenario finds the drill's two workers (``Drill.restore``), not this one.
        stack.procs.stop("worker-0", timeout=WORKER_STOP_SECONDS)
    said: WorkerSaid = figures.pop("worker_log_while_down")
    checks = worker_without_broker_checks(summary, figures, said)
    return verdict(summary, checks) | figures | {"worker_log_while_down": said.as_dict()}


def worker_without_broker_checks(
    summary: dict[str, Any], figures: dict[str, Any], said: WorkerSaid
) -> dict[str, bool]:
    """Scenario 7's own conditions, each by name, from its ledger, figures and worker log."""
    jobs = BROKERLESS_JOBS
    engine = said.engines[0] if len(said.engines) == 1 else None
    return {
        "workers_exited_on_sigterm": all(
            code == 0 for code in figures["worker_exit_codes"].values()
        ),
        "every_post_202": summary["submitted"] == summary["accepted"] == jobs + AFTER_BROKER_JOBS,
        "web_logged_broker_unavailable": figures["web_bells_not_rung_lines"] > 0,
        "still_pending_after_wait": figures["pending_after_wait"] == jobs,
        "completed_without_broker_in_time": figures["completed_after_worker_start_s"] is not None,
        "one_engine_claimed_each_once": figures["claims"] == {str(engine): {"1": jobs}},
        "one_upstream_call_each": figures["upstream_calls"] == jobs,
        "worker_logged_broker_refused": said.broker_refused > 0,
        "no_ready_while_broker_down": said.ready == 0,
        "all_completed_with_broker_back": summary["completed"] == summary["accepted"],
        "worker_logged_ready_with_broker_back": figures["ready_after_redis_s"] is not None,
    }


# --- 8 ------------------------------------------------------------------------------------------
HOOKED_JOBS = 100
WEBHOOK_HEADER = "x-bf-async-webhook"
DELIVERIES_TABLE = "webhooks_webhookdelivery"
HOLD_QUIET_SECONDS = 1.5  # no new POST this long: the worker's loop is waiting on what it sent
HOLD_DEADLINE = 30.0  # for the first notices to reach the receiver
# A notice in flight in a killed worker is sent again once its claim lapses (the deliveries'
# lease, 60 s, is not shortened for the drill), by the worker started in its place.
HOOK_DEADLINE = 150.0


def _quiet(receiver: WebhookReceiver) -> Callable[[], bool]:
    """Whether the receiver holds notices and no new one came for a while."""
    last = {"count": 0, "since": time.monotonic()}

    def quiet() -> bool:
        count = len(receiver.arrivals.arrivals)
        if count != last["count"]:
            last.update(count=count, since=time.monotonic())
        return bool(count) and time.monotonic() - last["since"] >= HOLD_QUIET_SECONDS

    return quiet


def s8_webhooks_through_worker_kill(drill: Drill, sizes: Sizes) -> dict[str, Any]:
    """100 jobs naming a webhook endpoint; the receiver holds its answers; kill -9 the one worker
    with notices in flight and more due; a new worker sends them all, at least once each."""
    stack, jobs = drill.stack, HOOKED_JOBS
    stack.procs.stop("worker-1")  # one worker left, so it holds every notice when it dies
    stack.query(f"TRUNCATE {DELIVERIES_TABLE}")
    port, name = free_port(), drill.marker("s8-hooks")
    url = f"http://127.0.0.1:{port}{PATH}"
    made = stack.manage("create_webhook_endpoint", "--name", name, "--url", url)
    receiver = WebhookReceiver(made.strip().splitlines()[-1], port)
    figures: dict[str, Any] = {}

    async def load(client: Client) -> None:
        hook = {WEBHOOK_HEADER: name}
        await client.submit(drill.marker("s8"), MODEL, jobs, headers=hook)
        await _wait_for(_quiet(receiver), HOLD_DEADLINE, every=0.1)
        held = receiver.held()
        figures["deliveries_at_kill"] = await asyncio.to_thread(
            stack.count_by, DELIVERIES_TABLE, "status"
        )
        drill.log(f"  fault: kill -9 worker-0 with {len(held)} notices held by the receiver")
        await asyncio.to_thread(stack.kill_worker, 0)
        killed_at = time.monotonic()
        receiver.release()
        await asyncio.to_thread(stack.start_worker, 0)

        def all_delivered() -> bool:
            delivered = stack.count_by(DELIVERIES_TABLE, "status") == {"delivered": jobs}
            return delivered and not receiver.arrivals.unnotified(client.ledger.accepted_ids())

        await _wait_for(all_delivered, HOOK_DEADLINE, every=1.0)
        figures["all_delivered_after_kill_s"] = round(time.monotonic() - killed_at, 1)
        figures["held_at_kill"] = len(held)
        figures["held_arrived_again"] = receiver.arrivals.arrived_again(held, killed_at)

    async def observed() -> Ledger:
        async with receiver:  # until the final poll: a notice sent late must find it
            return await observe(drill, "s8", load, DEADLINE)

    drill.clear_jobs()
    stack.set_latency(0)
    try:
        ledger = run_async(observed())
    finally:
        stack.start_worker(1)
    summary = ledger.summary()
    figures["webhooks"] = receiver.arrivals.summary(ledger.accepted_ids())
    figures["deliveries_at_end"] = stack.count_by(DELIVERIES_TABLE, "status")
    figures["delivery_attempts"] = stack.count_by(DELIVERIES_TABLE, "attempts")
    checks = webhook_checks(summary, figures["webhooks"], figures)
    return verdict(summary, checks) | figures


def webhook_checks(
    summary: dict[str, Any], notices: dict[str, Any], figures: dict[str, Any]
) -> dict[str, bool]:
    """Scenario 8's own conditions, each by name: from the ledger, the receiver and the table."""
    jobs = HOOKED_JOBS
    return {
        "every_job_ended": summary["accepted"] == jobs
        and summary["completed"] + sum(summary["failed"].values()) == jobs,
        "notices_in_flight_at_kill": figures["held_at_kill"] > 0,
        "every_job_notified": notices["jobs_notified"] == jobs and notices["unnotified"] == 0,
        "every_signature_valid": notices["invalid_signatures"] == 0,
        "one_webhook_id_per_job": notices["jobs_with_several_webhook_ids"] == 0,
        "no_notice_of_another_job": notices["notices_of_unknown_jobs"] == 0,
        "held_notices_sent_again": figures["held_arrived_again"] == figures["held_at_kill"],
        "every_delivery_row_delivered": figures["deliveries_at_end"] == {"delivered": jobs},
    }


Scenario = Callable[[Drill, Sizes], dict[str, Any]]
SCENARIOS: dict[str, tuple[str, Scenario]] = {
    "1": ("kill -9 a worker with 200 jobs in flight", s1_worker_killed),
    "2": ("Redis down 30 s at 50 submits/s", s2_redis_down),
    "3": ("Postgres restart at 50 submits/s", s3_postgres_restart),
    "4": ("web server restart at 50 submits/s", s4_web_restart),
    "5": ("misbehaving upstreams", s5_bad_upstreams),
    "6": ("soak at half the maximum submit rate", s6_soak),
    "7": ("a worker started while Redis is down runs the pending jobs", s7_worker_without_broker),
    "8": ("kill -9 a worker with webhook notices in flight", s8_webhooks_through_worker_kill),
}
