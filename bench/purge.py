"""Scenario S6's rows: expired jobs seeded straight in SQL (Postgres only), and what is left.

The scenario runs the purge the way an operator would, ``manage.py`` + ``COMMAND`` in its own
process, while submits continue through the API.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg

# The AsyncJob table (jobs/models.py); bench code must not import Django to learn it.
TABLE = "jobs_asyncjob"
SEED_MODEL = "bench-purge"
SEED_CHUNK = 100_000

# Rows as a finished job leaves them: 1 in 20 failed with a relayed provider error, the rest
# completed with a small text_completion. Completed 2 to ~2.3 hours ago with a 1-hour TTL, so every
# row expired at least an hour ago, spread over time like a real backlog.
_SEED_SQL = f"""
INSERT INTO {TABLE} (
    id, request_type, virtual_key_id, status, provider, model, fallbacks, request, result_ttl,
    attempts, claimed_by, lease_expires_at, tries, counted, dispatched_at, created_at, started_at,
    completed_at,
    expires_at, status_code, result, error
)
SELECT
    gen_random_uuid(), 'text_completion', NULL, s.status, 'openai', '{SEED_MODEL}',
    '["anthropic/claude-bench"]'::jsonb,
    jsonb_build_object('prompt', 'Say hello to job ' || s.i, 'max_tokens', 16,
                       'temperature', 0.7),
    3600, 1, 'bench-worker-' || (s.i %% 8), NULL, '[]'::jsonb, false,
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


# ``manage.py`` as an operator runs the purge, in its own process; it prints a JSON summary.
COMMAND = ("purge_jobs", "--json", "--time-budget", "600")
