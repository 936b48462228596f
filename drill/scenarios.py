"""The drill's scenarios 1-8: one fault each, with every accepted job accounted for.

Each returns the ledger's counts, its own figures, its own conditions by name (``checks``) and
``passed``: 0 lost, 0 duplicated, no job charged twice and every check held (``verdict``).
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from drill.observe import MODEL, Client, Drill, Ledger, at, observe, verdict
from drill.services import PATH, WebhookReceiver
from harness.load import run as run_async
from harness.procs import free_port, tree_rss_bytes
from harness.stack import JOBS_TABLE, WORKER_STOP_SECONDS
from harness.upstream import FAULTS

DEADLINE = 120.0  # seconds after the load (and its faults) for every accepted job to finish
SUBMIT_RATE = 50.0
MIB = 2**20
Load = Callable[[Client], Awaitable[None]]
Fault = tuple[float, Callable[[], Any], str]  # seconds after the one before ended, action, what
Sizes = dict[str, float]  # the soak's length: a short default run, or ``--long``
SHORT: Sizes = {"max_rate_seconds": 8.0, "soak_seconds": 75.0}
LONG: Sizes = {"max_rate_seconds": 15.0, "soak_seconds": 600.0}


def _steady(
    drill: Drill, label: str, seconds: float, faults: list[Fault], beside: Load | None = None
) -> tuple[Ledger, list[float]]:
    """``SUBMIT_RATE`` submits a second for ``seconds`` (200 ms upstream) while each fault runs
    ``delay`` seconds after the one before it ended, and ``beside`` with them; the ledger, when
    the load started and when each fault ended (``time.time()``)."""
    times: list[float] = []

    async def load(client: Client) -> None:
        times.append(time.time())
        count = round(SUBMIT_RATE * seconds)
        submits = client.submit(drill.marker(label), MODEL, count, SUBMIT_RATE)
        await asyncio.gather(submits, in_turn(), *([beside(client)] if beside else []))

    async def in_turn() -> None:
        for delay, action, what in faults:
            times.append(await at(delay, action, drill.log, what))

    return observe(drill, label, 200, load, DEADLINE), times


async def _wait_for(ready: Callable[[], bool], seconds: float, every: float = 0.25) -> float | None:
    """Ask ``ready`` (in a thread) for up to ``seconds``; how long it took, or None."""
    started = time.monotonic()
    while not await asyncio.to_thread(ready):
        if time.monotonic() - started > seconds:
            return None
        await asyncio.sleep(every)
    return round(time.monotonic() - started, 1)


def log_from_now(path: Path) -> Callable[[], str]:
    """What a process's log says from now on: an earlier scenario's outage left the same lines in
    the process logs, which grow over the whole run."""
    start = path.stat().st_size if path.exists() else 0
    return lambda: path.read_bytes()[start:].decode(errors="replace") if path.exists() else ""


def s1_worker_killed(drill: Drill, sizes: Sizes) -> dict[str, Any]:
    """kill -9 a worker with 200 jobs in flight (3 s upstream); a new one starts at once."""
    stack, jobs = drill.stack, 200
    held: dict[str, Any] = {}
    # One worker left, so it holds every job when it dies (``Drill.restore`` starts the other).
    stack.procs.stop("worker-1")

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

    summary = observe(drill, "s1", 3000, load, DEADLINE).summary()
    sql = f"SELECT extract(epoch FROM max(completed_at)) FROM {JOBS_TABLE}"  # noqa: S608
    ((last,),) = stack.query(sql)
    held["last_completed_after_s"] = round(float(last or 0) - held.pop("killed_at"), 1)
    attempts = stack.count_by(JOBS_TABLE, "attempts")
    checks = {
        "all_in_flight_at_kill": held["processing"] == jobs,
        "all_completed": summary["completed"] == jobs,
        "all_claimed_again": sum(n for a, n in attempts.items() if int(a) >= 2) == jobs,
    }
    return verdict(summary, checks) | {"at_kill": held, "attempts": attempts}


def s2_redis_down(drill: Drill, sizes: Sizes) -> dict[str, Any]:
    """Redis stopped for 30 s while 50 jobs/s are submitted."""
    faults = [(5.0, drill.redis.stop, "Redis stopped"), (30.0, drill.redis.start, "Redis started")]
    ledger, (_, down, up) = _steady(drill, "s2", 45.0, faults)
    summary, during = ledger.summary(), "completed_at BETWEEN to_timestamp(%s) AND to_timestamp(%s)"
    dead = [f"worker-{n}" for n in range(2) if not drill.stack.procs.alive(f"worker-{n}")]
    # Why a Celery worker gave up: the last CRITICAL line of its log.
    logs = {name: drill.stack.procs.log_path(name).read_text(errors="replace") for name in dead}
    checks = {
        "every_submit_accepted": summary["accepted"] == summary["submitted"],
        "every_job_completed": summary["completed"] == summary["accepted"],
        "workers_alive": not dead,
    }
    return verdict(summary, checks) | {
        "outage_seconds": round(up - down, 1),
        "completed_during_outage": drill.stack.count_where(during, (down, up)),
        "dead_workers_last_critical_line": {
            name: next((ln for ln in reversed(text.splitlines()) if " CRITICAL " in ln), None)
            for name, text in logs.items()
        },
    }


def s3_postgres_restart(drill: Drill, sizes: Sizes) -> dict[str, Any]:
    """Postgres stopped (fast shutdown), down 5 s, started again, while 50 jobs/s are submitted
    and one job is polled 20 times a second."""
    polls: dict[str, int] = {}

    async def poll_one(client: Client) -> None:
        await client.submit(marker := drill.marker("s3-polled"), MODEL, 1)
        job_id = str(client.ledger.submissions[f"{marker}-0"].job_id)
        polls.update(await client.poll_at_rate(job_id, 20.0, 40.0))

    faults = [(10.0, drill.postgres.stop, "Postgres stopped")]
    faults.append((5.0, drill.postgres.start, "Postgres started"))
    ledger, (_, stopped, started) = _steady(drill, "s3", 40.0, faults, poll_one)
    summary = ledger.summary()
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


def s4_web_restart(drill: Drill, sizes: Sizes) -> dict[str, Any]:
    """The web server stopped (SIGTERM) and started again while 50 jobs/s are submitted."""
    faults = [(10.0, drill.stack.restart_web, "web server restarting")]
    ledger, (begun, restarted) = _steady(drill, "s4", 30.0, faults)
    summary = ledger.summary()
    checks = {
        "every_answer_202": not summary["refused"],
        "every_job_completed": summary["completed"] == summary["accepted"],
    }
    return verdict(summary, checks) | {
        "restart_seconds": round(restarted - begun - 10.0, 1),
        "unanswered_that_created_a_job": summary["created_without_202"]["after_no_answer"],
        "of_which_unfinished": summary["created_without_202"]["unfinished"],
    }


def s5_bad_upstreams(drill: Drill, sizes: Sizes) -> dict[str, Any]:
    """Upstreams that hang, send invalid JSON, a wrong content type, half a body, or hang up (5
    jobs each), then 50 jobs to the normal one."""
    procs, normal_after, marker = drill.stack.procs, 50, drill.marker("s5")
    pids_before = {n: procs.pids(f"worker-{n}") for n in range(2)}

    async def load(client: Client) -> None:
        await asyncio.gather(*(client.submit(f"{marker}-{f}", f"openai/{f}", 5) for f in FAULTS))
        await client.wait_seen(time.monotonic() + DEADLINE)
        await client.submit(drill.marker("s5-normal"), MODEL, normal_after)

    ledger = observe(drill, "s5", 0, load, DEADLINE)
    summary, per_fault = ledger.summary(), {}
    for name in FAULTS:  # what the final poll showed of each fault mode's jobs
        ids = [s.job_id for m, s in ledger.submissions.items() if m.startswith(f"{marker}-{name}-")]
        seen = [o for job_id in ids if job_id and (o := ledger.final.get(job_id))]
        per_fault[name] = {
            "statuses": sorted({o.status for o in seen}),
            "status_codes": sorted({o.status_code for o in seen if o.status_code}),
            "error_codes": sorted({o.error_code for o in seen if o.error_code}),
            "message": next((o.error_message for o in seen if o.error_message), None),
        }
    pids_after = {n: procs.pids(f"worker-{n}") for n in range(2)}
    checks = {
        "same_worker_processes": pids_after == pids_before and all(pids_after.values()),
        "every_fault_job_failed_with_a_code": all(
            f["statuses"] == ["failed"] and f["error_codes"] for f in per_fault.values()
        ),
        "normal_jobs_completed_after": summary["completed"] == normal_after,
    }
    return verdict(summary, checks) | {"faults": per_fault}


def _growth(samples: list[tuple[float, int]], warm_until: float) -> dict[str, float]:
    """RSS at the end of warm-up and at the end (medians of 6 s), and the growth between."""
    end_time = samples[-1][0]
    start_mib = statistics.median(r for t, r in samples if warm_until - 6 <= t <= warm_until) / MIB
    end_mib = statistics.median(r for t, r in samples if t >= end_time - 6) / MIB
    return {
        "after_warmup_mib": round(start_mib, 1),
        "end_mib": round(end_mib, 1),
        "growth": round(end_mib / start_mib - 1, 4),
    }


def s6_soak(drill: Drill, sizes: Sizes) -> dict[str, Any]:
    """Half the maximum submit rate (measured just before) for the soak's length."""
    stack, seconds = drill.stack, sizes["max_rate_seconds"]
    drill.clear_jobs()
    stack.set_latency(200)
    drill.log(f"  measuring the maximum submit rate ({seconds:g} s, 64 connections)")
    max_rate = drill.max_submit_rate("s6-max", seconds)
    unfinished = "status IN ('pending', 'processing')"
    run_async(_wait_for(lambda: stack.count_where(unfinished) == 0, 180.0, every=1.0))
    left = stack.count_where(unfinished)
    drill.log(f"  maximum {max_rate:.0f} submits/s; its jobs drained ({left} left)")
    soak, rate = sizes["soak_seconds"], max_rate / 2
    samples: dict[str, list[tuple[float, int]]] = {"web": [], "workers": []}

    async def sample_rss() -> None:  # every 2 s while the soak runs
        started = time.monotonic()
        while (now := time.monotonic() - started) < soak:
            for name, prefix in (("web", "web"), ("workers", "worker-")):
                samples[name].append((now, tree_rss_bytes(stack.procs.pids(prefix))))
            await asyncio.sleep(2.0)

    async def load(client: Client) -> None:
        submits = client.submit(drill.marker("s6"), MODEL, round(rate * soak), rate)
        await asyncio.gather(submits, sample_rss())

    drill.log(f"  soak: {rate:.0f} submits/s for {soak:g} s (warm-up {soak / 4:g} s)")
    # A backlog the workers build up while the soak runs is drained afterwards: the deadline
    # grows with the soak, and a stuck job still shows as lost.
    summary = observe(drill, "s6", 200, load, DEADLINE + soak).summary()
    memory = {name: _growth(points, soak / 4) for name, points in samples.items()}
    checks = {
        "every_submit_accepted": summary["accepted"] == summary["submitted"],
        "every_job_completed": summary["completed"] == summary["accepted"],
        "rss_flat_after_warmup": all(m["growth"] <= 0.10 for m in memory.values()),
    }
    return verdict(summary, checks) | {
        "max_submit_rate": round(max_rate, 1),
        "soak_rate": round(rate, 1),
        "soak_seconds": soak,
        "warmup_seconds": soak / 4,
        "max_rate_jobs_left_undrained": left,
        "memory": memory,
    }


ENGINE_STARTED = re.compile(r"job engine (\S+) started")
# Celery's consumer, each time it fails to reach the broker (an ERROR line, at any log level).
BROKER_REFUSED = re.compile(r"consumer: Cannot connect to redis://")
# Celery's INFO line once its consumer is connected: "<queue>-<n>@<host> ready."
WORKER_READY = re.compile(r"@\S+ ready\.")
# The web process, when a bell for a committed job could not be published.
BELLS_NOT_RUNG = re.compile(r"broker unavailable, \d+ bells not rung")
BROKERLESS_JOBS, AFTER_BROKER_JOBS = 200, 10


def worker_said(text: str) -> dict[str, int]:
    """What a Celery worker's log says: how many job engines it started, how often it could not
    reach the broker and how often that it consumes from it."""
    return {
        "engines_started": len(ENGINE_STARTED.findall(text)),
        "broker_refused_lines": len(BROKER_REFUSED.findall(text)),
        "ready_lines": len(WORKER_READY.findall(text)),
    }


def s7_worker_without_broker(drill: Drill, sizes: Sizes) -> dict[str, Any]:
    """Both workers stopped, then Redis; 200 jobs submitted; one worker started with Redis still
    down runs them from the table, then 10 more once Redis is back."""
    stack, jobs = drill.stack, BROKERLESS_JOBS
    figures: dict[str, Any] = {}
    engines: list[str] = []

    async def load(client: Client) -> None:
        figures["worker_exit_codes"] = await asyncio.to_thread(stack.stop_workers)
        drill.log(f"  both workers stopped (SIGTERM): exit codes {figures['worker_exit_codes']}")
        await at(0, drill.redis.stop, drill.log, "Redis stopped")
        web = log_from_now(stack.procs.log_path("web"))
        await client.submit(drill.marker("s7"), MODEL, jobs, SUBMIT_RATE)
        await asyncio.sleep(5.0)  # longer than the engines' poll interval
        figures["web_bells_not_rung_lines"] = len(BELLS_NOT_RUNG.findall(web()))
        figures["pending_after_wait"] = stack.count_where("status = 'pending' AND attempts = 0")
        drill.log(f"  {figures['pending_after_wait']} jobs pending; one worker starts, no Redis")
        worker, started = log_from_now(stack.procs.log_path("worker-0")), time.monotonic()
        # At INFO, as docker-compose.yml's: the engine's start and Celery's "ready." line with it.
        await asyncio.to_thread(stack.start_worker, 0, "INFO")
        all_seen = await client.wait_seen(started + 60.0)
        took = round(time.monotonic() - started, 1)
        figures["completed_after_worker_start_s"] = took if all_seen else None
        # The engine may finish the jobs before the consumer has said it cannot connect.
        await _wait_for(lambda: BROKER_REFUSED.search(worker()) is not None, 10.0)
        figures["worker_log_while_down"] = worker_said(log := worker())
        engines.extend(ENGINE_STARTED.findall(log))  # their ids, in order
        figures["claims"] = stack.count_by(JOBS_TABLE, "claimed_by", "attempts")
        figures["upstream_calls"] = stack.upstream_stats()["requests"]
        await at(0, drill.redis.start, drill.log, "Redis started")
        await client.submit(drill.marker("s7-after"), MODEL, AFTER_BROKER_JOBS)
        # Celery retries the broker at growing intervals, up to 30 s apart.
        ready = _wait_for(lambda: WORKER_READY.search(worker()) is not None, 60.0)
        figures["ready_after_redis_s"] = await ready

    try:
        summary = observe(drill, "s7", 200, load, DEADLINE).summary()
    finally:
        # The next scenario finds the drill's two workers (``Drill.restore``), not this one.
        stack.procs.stop("worker-0", timeout=WORKER_STOP_SECONDS)
    return verdict(summary, worker_without_broker_checks(summary, figures, engines)) | figures


def worker_without_broker_checks(
    summary: dict[str, Any], f: dict[str, Any], engines: list[str]
) -> dict[str, bool]:
    """Scenario 7's own conditions, each by name, from its ledger, figures and the ids of the
    engines its worker started."""
    jobs, said = BROKERLESS_JOBS, f["worker_log_while_down"]
    return {
        "workers_exited_on_sigterm": set(f["worker_exit_codes"].values()) == {0},
        "every_post_202": summary["submitted"] == summary["accepted"] == jobs + AFTER_BROKER_JOBS,
        "web_logged_broker_unavailable": f["web_bells_not_rung_lines"] > 0,
        "still_pending_after_wait": f["pending_after_wait"] == jobs,
        "completed_without_broker_in_time": f["completed_after_worker_start_s"] is not None,
        "one_engine_claimed_each_once": len(engines) == 1
        and f["claims"] == {engines[0]: {"1": jobs}},
        "one_upstream_call_each": f["upstream_calls"] == jobs,
        "worker_logged_broker_refused": said["broker_refused_lines"] > 0,
        "no_ready_while_broker_down": said["ready_lines"] == 0,
        "all_completed_with_broker_back": summary["completed"] == summary["accepted"],
        "worker_logged_ready_with_broker_back": f["ready_after_redis_s"] is not None,
    }


HOOKED_JOBS = 100
DELIVERIES_TABLE = "webhooks_webhookdelivery"


def s8_webhooks_through_worker_kill(drill: Drill, sizes: Sizes) -> dict[str, Any]:
    """100 jobs naming a webhook endpoint; the receiver holds its answers; kill -9 the one worker
    with notices in flight and more due; a new worker sends them all, at least once each."""
    stack, jobs = drill.stack, HOOKED_JOBS
    figures: dict[str, Any] = {}
    stack.procs.stop("worker-1")  # one worker left, so it holds every notice when it dies
    stack.query(f"TRUNCATE {DELIVERIES_TABLE}")
    port, name = free_port(), drill.marker("s8-hooks")
    url = f"http://127.0.0.1:{port}{PATH}"
    made = stack.manage("create_webhook_endpoint", "--name", name, "--url", url)
    receiver = WebhookReceiver(made.strip().splitlines()[-1], port)
    last = [0.0, time.monotonic()]  # how many POSTs had arrived, since when

    def deliveries(column: str = "status") -> dict[str, Any]:
        return stack.count_by(DELIVERIES_TABLE, column)

    def quiet() -> bool:  # notices held, none new for 1.5 s: the worker waits on what it sent
        if len(receiver.arrivals) != last[0]:
            last[:] = [len(receiver.arrivals), time.monotonic()]
        return bool(last[0]) and time.monotonic() - last[1] >= 1.5

    async def load(client: Client) -> None:
        await client.submit(drill.marker("s8"), MODEL, jobs, headers={"x-bf-async-webhook": name})
        await _wait_for(quiet, 30.0, every=0.1)
        held = list(receiver.held)
        figures["deliveries_at_kill"] = await asyncio.to_thread(deliveries)
        drill.log(f"  fault: kill -9 worker-0 with {len(held)} notices held by the receiver")
        await asyncio.to_thread(stack.kill_worker, 0)
        killed_at = time.monotonic()
        receiver.release()
        await asyncio.to_thread(stack.start_worker, 0)

        def all_delivered() -> bool:
            unnotified = receiver.arrivals.unnotified(client.ledger.accepted_ids())
            return deliveries() == {"delivered": jobs} and not unnotified

        # A notice in flight in the killed worker is sent again once its claim lapses (the
        # deliveries' lease, 60 s, is not shortened for the drill) by the worker started after.
        await _wait_for(all_delivered, 150.0, every=1.0)
        figures["all_delivered_after_kill_s"] = round(time.monotonic() - killed_at, 1)
        figures["held_at_kill"] = len(held)
        figures["held_arrived_again"] = receiver.arrivals.arrived_again(held, killed_at)

    # The receiver runs until the final poll: a notice sent late must find it.
    ledger = observe(drill, "s8", 0, load, DEADLINE, around=receiver)
    summary = ledger.summary()
    figures["webhooks"] = receiver.arrivals.summary(ledger.accepted_ids())
    figures["deliveries_at_end"] = deliveries()
    figures["delivery_attempts"] = deliveries("attempts")
    return verdict(summary, webhook_checks(summary, figures)) | figures


def webhook_checks(summary: dict[str, Any], figures: dict[str, Any]) -> dict[str, bool]:
    """Scenario 8's own conditions, each by name: from the ledger, the receiver and the table."""
    jobs, notices = HOOKED_JOBS, figures["webhooks"]
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
