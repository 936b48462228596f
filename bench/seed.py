"""Job rows written straight in SQL (Postgres only), for the scenarios that need more rows than
the API could submit in their time: S6's expired jobs and S8's backlog of one key.

Bench code must not import Django, so the AsyncJob table (jobs/models.py) is named here, every
column as a submit or a finished job writes it.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from harness.runs import Log
from harness.stack import JOBS_TABLE

SEED_CHUNK = 100_000
_INSERT = f"""
INSERT INTO {JOBS_TABLE} (
    id, request_type, virtual_key_id, status, provider, model, fallbacks, request, result_ttl,
    attempts, claimed_by, lease_expires_at, tries, counted, dispatched_at, created_at, started_at,
    completed_at, expires_at, status_code, result, error
)
"""

# Rows as a finished job leaves them: 1 in 20 failed with a relayed provider error, the rest
# completed with a small text_completion. Completed 2 to ~2.3 hours ago with a 1-hour TTL, so every
# row expired at least an hour ago, spread over time like a real backlog.
EXPIRED = (
    _INSERT  # noqa: S608 (constants only; the values are bound parameters)
    + """
SELECT
    gen_random_uuid(), 'text_completion', NULL, s.status, 'openai', 'bench-purge',
    '["anthropic/claude-bench"]'::jsonb,
    jsonb_build_object('prompt', 'Say hello to job ' || s.i, 'max_tokens', 16, 'temperature', 0.7),
    3600, 1, 'bench-worker-' || (s.i %% 8), NULL, '[]'::jsonb, false,
    s.done - interval '1500 ms', s.done - interval '1500 ms', s.done - interval '1200 ms',
    s.done, s.done + interval '3600 s', CASE WHEN s.status = 'failed' THEN 502 ELSE 200 END,
    CASE WHEN s.status = 'completed' THEN jsonb_build_object(
        'id', 'cmpl-bench-' || s.i, 'created', extract(epoch FROM s.done)::bigint,
        'choices', jsonb_build_array(jsonb_build_object('text',
            'Hello, job ' || s.i || '! Nice to meet you.', 'index', 0, 'logprobs', NULL,
            'finish_reason', 'stop'))) || '{"object": "text_completion", "model": "gpt-bench",
        "usage": {"prompt_tokens": 6, "completion_tokens": 12, "total_tokens": 18}}' END,
    CASE WHEN s.status = 'failed' THEN jsonb_build_object('event_id', gen_random_uuid()::text)
        || '{"type": "api_error", "is_bifrost_error": false, "status_code": 502, "error": {
            "type": "api_error", "code": "bad_gateway", "message": "Upstream returned 502",
            "param": null, "event_id": null}, "extra_fields": {"provider": "openai",
            "model_requested": "openai/gpt-bench", "request_type": "text_completion"}}' END
FROM (
    SELECT i, CASE WHEN i %% 20 = 0 THEN 'failed' ELSE 'completed' END AS status,
           now() - interval '2 hours' - i * interval '10 ms' AS done
    FROM generate_series(%(first)s::int, %(last)s::int) AS i
) AS s
"""
)

# Pending completions of one key, created a minute ago, a millisecond apart (oldest first), as a
# submit writes them.
BACKLOG = (
    _INSERT
    + """
SELECT gen_random_uuid(), 'text_completion', %(key)s, 'pending', 'openai', 'gpt-bench', '[]',
       jsonb_build_object('prompt', 'Backlog job ' || i, 'max_tokens', 16), 3600,
       0, '', NULL, '[]', false, now(),
       now() - interval '60 s' + i * interval '1 ms', NULL, NULL, NULL, NULL, NULL, NULL
FROM generate_series(%(first)s::int, %(last)s::int) AS i
"""
)


def seed(database_url: str, sql: str, rows: int, log: Log, **params: Any) -> float:
    """Insert ``rows`` rows with ``sql``, a chunk at a time; the seconds it took."""
    started = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as conn:
        for first in range(1, rows + 1, SEED_CHUNK):
            # Each chunk commits on its own, so a long seed never holds one huge transaction.
            last = min(first + SEED_CHUNK - 1, rows)
            conn.execute(sql, {"first": first, "last": last, **params})  # type: ignore[arg-type]
            log(f"  seeded {last:,}/{rows:,} jobs ({time.perf_counter() - started:.1f} s)")
        # Fresh statistics, as autovacuum would have them on a table that grew over days.
        conn.execute(f"ANALYZE {JOBS_TABLE}")
    return time.perf_counter() - started
