"""Scenario S6: purge a large backlog of expired jobs while submits continue (Postgres only).

The runner seeds expired rows straight in SQL (``seed_expired``), runs the purge the way an operator
would, as ``manage.py purge_jobs --json`` in its own process (``run_purge``), and checks what is
left (``count_expired``). ``insert_load`` plays the submits that keep arriving meanwhile. Nothing
here imports Django, so the runner can import it without settings.

Run it alone (it cleans up what it seeded)::

    python -m bench.purge --database-url postgres://root@127.0.0.1:5432/purge_bench \\
        --rows 1000000 --load-rate 100
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import psycopg

# The AsyncJob table (jobs/models.py); bench code must not import Django to learn it.
TABLE = "jobs_asyncjob"
# Marks every row this module writes, so cleanup touches nothing else.
SEED_MODEL = "bench-purge"
LOAD_MODEL = "bench-purge-load"
SEED_CHUNK = 100_000
REPO = Path(__file__).resolve().parent.parent

# Rows as a finished job leaves them: 1 in 20 failed with a relayed provider error, the rest
# completed with a small text_completion. Completed 2 to ~2.3 hours ago with a 1-hour TTL, so every
# row expired at least an hour ago, spread over time like a real backlog.
_SEED_SQL = f"""
INSERT INTO {TABLE} (
    id, request_type, virtual_key_id, status, provider, model, fallbacks, request, result_ttl,
    attempts, claimed_by, lease_expires_at, dispatched_at, created_at, started_at, completed_at,
    expires_at, status_code, result, error
)
SELECT
    gen_random_uuid(), 'text_completion', NULL, s.status, 'openai', '{SEED_MODEL}',
    '["anthropic/claude-bench"]'::jsonb,
    jsonb_build_object('prompt', 'Say hello to job ' || s.i, 'max_tokens', 16,
                       'temperature', 0.7),
    3600, 1, 'bench-worker-' || (s.i %% 8), NULL,
    s.done - interval '1500 ms', s.done - interval '1500 ms', s.done - interval '1200 ms',
    s.done, s.done + interval '3600 s',
    CASE WHEN s.status = 'failed' THEN 502 ELSE 200 END,
    CASE WHEN s.status = 'completed' THEN jsonb_build_object(
        'id', 'cmpl-bench-' || s.i, 'object', 'text_completion',
        'created', extract(epoch FROM s.done)::bigint, 'model', 'gpt-bench',
        'choices', jsonb_build_array(jsonb_build_object(
            'text', 'Hello, job ' || s.i || '! Nice to meet you.', 'index', 0,
            'logprobs', NULL, 'finish_reason', 'stop')),
        'usage', jsonb_build_object('prompt_tokens', 6, 'completion_tokens', 12,
                                    'total_tokens', 18)) END,
    CASE WHEN s.status = 'failed' THEN jsonb_build_object(
        'event_id', gen_random_uuid()::text, 'type', 'api_error', 'is_bifrost_error', false,
        'status_code', 502,
        'error', jsonb_build_object('type', 'api_error', 'code', 'bad_gateway',
                                    'message', 'Upstream returned 502', 'param', NULL,
                                    'event_id', NULL),
        'extra_fields', jsonb_build_object('provider', 'openai', 'model_requested',
                                           'openai/gpt-bench',
                                           'request_type', 'text_completion')) END
FROM (
    SELECT i,
           CASE WHEN i %% 20 = 0 THEN 'failed' ELSE 'completed' END AS status,
           now() - interval '2 hours' - i * interval '10 ms' AS done
    FROM generate_series(%(first)s::int, %(last)s::int) AS i
) AS s
"""  # noqa: S608 (constants only; the values are bound parameters)

_LOAD_SQL = f"""
INSERT INTO {TABLE} (
    id, request_type, virtual_key_id, status, provider, model, fallbacks, request, result_ttl,
    attempts, claimed_by, dispatched_at, created_at
) VALUES (
    gen_random_uuid(), 'text_completion', NULL, 'pending', 'openai', '{LOAD_MODEL}', '[]'::jsonb,
    %(request)s::jsonb, 3600, 0, '', now(), now()
)
"""  # noqa: S608 (constants only; the values are bound parameters)


def seed_expired(database_url: str, rows: int, log: Callable[[str], Any] = print) -> float:
    """Insert ``rows`` jobs that expired long ago; return the seconds it took."""
    started = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as conn:
        done = 0
        while done < rows:
            last = min(done + SEED_CHUNK, rows)
            # Each chunk commits on its own, so a long seed never holds one huge transaction.
            conn.execute(_SEED_SQL, {"first": done + 1, "last": last})
            done = last
            log(f"seeded {done:,}/{rows:,} expired jobs ({time.perf_counter() - started:.1f} s)")
        # Fresh statistics, as autovacuum would have them on a table that grew over days.
        conn.execute(f"ANALYZE {TABLE}")
    return time.perf_counter() - started


def count_expired(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            f"SELECT count(*) FROM {TABLE} WHERE expires_at <= now()"  # noqa: S608
        ).fetchone()
    return int(row[0]) if row else 0


def run_purge(python: str, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Run ``manage.py purge_jobs --json`` once, as its own process; return its summary."""
    command = [python, "manage.py", "purge_jobs", "--json", "--time-budget", "600"]
    done = subprocess.run(  # noqa: S603 - our own fixed command
        command, cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"purge_jobs exited with {done.returncode}: {done.stderr.strip()[-2000:]}"
        )
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"purge_jobs printed nothing; stderr: {done.stderr.strip()[-2000:]}")
    summary: dict[str, Any] = json.loads(lines[-1])
    return summary


def insert_load(database_url: str, rate: float, stop: Event, results: Any) -> None:
    """Insert pending jobs at ``rate`` per second until ``stop``; put latency stats on ``results``.

    Each insert is its own transaction, like a submit; the stats show whether the purge ever
    made one wait.
    """
    latencies: list[float] = []
    interval = 1.0 / rate
    request = json.dumps({"prompt": "Say hi", "max_tokens": 5})
    with psycopg.connect(database_url, autocommit=True) as conn:
        next_at = time.perf_counter()
        while not stop.is_set():
            started = time.perf_counter()
            conn.execute(_LOAD_SQL, {"request": request})
            latencies.append(time.perf_counter() - started)
            next_at += interval
            time.sleep(max(0.0, next_at - time.perf_counter()))
    latencies.sort()
    count = len(latencies)
    results.put(
        {
            "inserts": count,
            "p50_ms": round(latencies[count // 2] * 1000, 2) if count else None,
            "p99_ms": round(latencies[int(count * 0.99)] * 1000, 2) if count else None,
            "max_ms": round(latencies[-1] * 1000, 2) if count else None,
        }
    )


def delete_bench_rows(database_url: str) -> int:
    """Remove whatever this module inserted (seeded rows the purge left, load rows)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        cursor = conn.execute(
            f"DELETE FROM {TABLE} WHERE model IN (%s, %s)",  # noqa: S608
            (SEED_MODEL, LOAD_MODEL),
        )
        return cursor.rowcount


def vacuum(database_url: str) -> float:
    """VACUUM the job table, as autovacuum would (a development Postgres may run without it)."""
    started = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"VACUUM {TABLE}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--load-rate", type=float, default=0.0, help="pending inserts per second during the purge"
    )
    args = parser.parse_args(argv)
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        parser.error("--database-url (or DATABASE_URL) must be a postgres:// URL")

    seconds = seed_expired(args.database_url, args.rows, log=lambda line: print(line, flush=True))
    print(f"seeded {args.rows:,} rows in {seconds:.1f} s", flush=True)
    env = {**os.environ, "DATABASE_URL": args.database_url}
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    results = context.Queue()
    load = None
    if args.load_rate > 0:
        load = context.Process(
            target=insert_load, args=(args.database_url, args.load_rate, stop, results)
        )
        load.start()
        time.sleep(1.0)  # the load is running before the purge starts
    try:
        summary = run_purge(sys.executable, env, REPO)
    finally:
        stop.set()
        if load is not None:
            load.join()
    report: dict[str, Any] = {"purge": summary, "expired_left": count_expired(args.database_url)}
    if load is not None:
        report["load"] = results.get(timeout=10)
    report["cleaned_up"] = delete_bench_rows(args.database_url)
    # Outside the measurement: give the space of the deleted rows back for the next run.
    report["vacuum_s"] = round(vacuum(args.database_url), 1)
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
