"""Scenario S8, a fair share of the workers: one key's backlog must not delay another key's jobs.

One key holds a backlog of 20,000 pending jobs, inserted straight in SQL as older than anything
else; a second key submits 10 jobs per second through the API, at 1 s upstream latency. The
figure is, for the second key's jobs, ``completed_at - created_at`` from the job table. The
workers run with room for fewer calls than usual (``IN_FLIGHT`` each), so the backlog outlasts
the second key's submits (the figure counts only if backlog jobs were still pending when the
second key's last job ended), and the figure measures the claim's order rather than how many
calls a second the machine can turn over.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import psycopg

from bench.scenarios import BENCH_MODEL, SUBMIT_PATH, BenchStack, Log, Sizes, submit_body
from harness.load import open_loop, percentiles, run
from harness.stack import JOBS_TABLE, TERMINAL, Stack

BACKLOG = 20_000
RATE = 10.0  # the second key's submits per second
LATENCY_MS = 1000.0
IN_FLIGHT = 100  # per worker: 2 workers take 200 backlog jobs a second, 100 s for all
FILL_SECONDS = 3.0
KEYS_TABLE = "gateway_virtualkey"  # VirtualKey (gateway/access/models.py); no Django here

# Pending completions of the backlog key, created a minute ago, a millisecond apart (oldest
# first), as a submit writes them.
_BACKLOG_SQL = f"""
INSERT INTO {JOBS_TABLE} (
    id, request_type, virtual_key_id, status, provider, model, fallbacks, request, result_ttl,
    attempts, claimed_by, lease_expires_at, tries, counted, dispatched_at, created_at, started_at,
    completed_at,
    expires_at, status_code, result, error
)
SELECT gen_random_uuid(), 'text_completion', %(key)s, 'pending', 'openai', 'gpt-bench', '[]',
       jsonb_build_object('prompt', 'Backlog job ' || i, 'max_tokens', 16), 3600,
       0, '', NULL, '[]', false, now(), now() - interval '60 s' + i * interval '1 ms', NULL, NULL,
       NULL, NULL, NULL, NULL
FROM generate_series(1, %(rows)s) AS i
"""  # noqa: S608 (constants only; the values are bound parameters)


def _key_id(stack: Stack, name: str) -> int:
    return int(stack.query(f"SELECT id FROM {KEYS_TABLE} WHERE name = %s", (name,))[0][0])  # noqa: S608


def _new_key(stack: Stack, name: str) -> tuple[str, int]:
    """A virtual key made as an operator makes one: (the key, its row id)."""
    key = stack.manage("create_virtual_key", "--name", name).strip().splitlines()[-1]
    return key, _key_id(stack, name)


def _seed_backlog(database_url: str, key_id: int) -> float:
    started = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(_BACKLOG_SQL, {"key": key_id, "rows": BACKLOG})
        conn.execute(f"ANALYZE {JOBS_TABLE}")
    return time.perf_counter() - started


def s8_fair_share(stack: BenchStack, sizes: Sizes, log: Log) -> dict[str, Any]:
    """The second key's completion latency while the first key's backlog is being worked off."""
    stack.stop_workers()
    stamp = int(time.time())
    _, backlog_key = _new_key(stack, f"s8-backlog-{stamp}")
    steady, steady_key = _new_key(stack, f"s8-steady-{stamp}")
    base = stack.config
    settings = {**base.settings, "GATEWAY_WORKER_MAX_IN_FLIGHT": str(IN_FLIGHT)}
    stack.config = dataclasses.replace(base, settings=settings)
    try:
        stack.start_workers(ready_with=BENCH_MODEL)
        stack.set_latency(LATENCY_MS)
        log(f"S8: seeding {BACKLOG:,} pending jobs of one key")
        seed_seconds = _seed_backlog(stack.config.database_url, backlog_key)
        time.sleep(FILL_SECONDS)  # the workers fill every slot with the backlog first
        seconds = sizes.steady_seconds
        log(f"S8: a second key submits {RATE:g} jobs/s for {seconds:g} s, latency 1 s")
        headers = {"Authorization": f"Bearer {steady}", "Content-Type": "application/json"}
        submits = run(
            open_loop(
                f"{stack.web_url}{SUBMIT_PATH}",
                rate=RATE,
                duration=seconds,
                body=submit_body,
                headers=headers,
                ok_statuses=(202,),
            )
        )
        mine = f"virtual_key_id = {steady_key}"
        ended = f"status IN {TERMINAL}"
        deadline = time.monotonic() + 300
        while stack.count_where(f"{mine} AND {ended}") < submits.ok:
            if time.monotonic() > deadline:
                break
            time.sleep(0.25)
        backlog_pending = stack.count_where(
            "virtual_key_id = %s AND status = 'pending'", (backlog_key,)
        )
    finally:
        stack.stop_workers()
        stack.config = base
    rows = stack.query(
        f"SELECT extract(epoch FROM completed_at - created_at) * 1000, "  # noqa: S608
        f"extract(epoch FROM started_at - created_at) * 1000 "
        f"FROM {JOBS_TABLE} WHERE {mine} AND status = 'completed'"
    )
    by_status = f"SELECT status, count(*) FROM {JOBS_TABLE} WHERE {mine} GROUP BY 1"  # noqa: S608
    statuses = {status: int(n) for status, n in stack.query(by_status)}
    stack.truncate()
    return {
        "backlog": BACKLOG,
        "seed_seconds": round(seed_seconds, 2),
        "rate": RATE,
        "seconds": seconds,
        "upstream_latency_ms": LATENCY_MS,
        "in_flight_per_worker": IN_FLIGHT,
        "submits": submits.to_json(),
        "steady_statuses": statuses,
        "backlog_pending_after": backlog_pending,
        "end_to_end_ms": _rounded(percentiles([float(total) for total, _ in rows])),
        "submit_to_claim_ms": _rounded(percentiles([float(wait) for _, wait in rows])),
    }


def _rounded(figures: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 1) for name, value in figures.items()}


def met(d: dict[str, Any]) -> bool:
    """p99 within 2 s of the upstream latency, every submit completed, the backlog outlasting it."""
    total = d["end_to_end_ms"]
    return (
        total["n"] == d["submits"]["ok"] > 0
        and total["p99"] <= d["upstream_latency_ms"] + 2000
        and d["backlog_pending_after"] > 0
    )
