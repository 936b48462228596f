"""The peer in scenario S7: the LiteLLM proxy, measured on the same fake upstream as the gateway.

LiteLLM is pinned to ``litellm[proxy]==1.108.7`` and lives in its own virtualenv (later releases
need packages the package index lacks, and its dependency set must not mix with the gateway's).

What S7 measures on it:

- **background mode**: ``POST /v1/responses`` with ``"background": true`` answers at once with a
  ``queued`` response whose id starts ``litellm_poll_``; the proxy then runs the call itself in an
  asyncio task *inside the web worker that took the request*, and keeps the state (queued →
  in_progress → completed / failed) in Redis, where ``GET /v1/responses/{id}`` reads it. Nothing is
  written to a database: a restart loses every job in flight, and the result lives only for the
  cache TTL. This needs ``litellm_settings.responses.background_mode.polling_via_cache`` and a
  Redis for the proxy (``general_settings.coordination_redis``); ``write_config`` sets both.
- **plain completions**: ``POST /v1/completions``, relayed synchronously.

What the upstream must support for background mode: the proxy removes ``background`` and calls
the upstream's ``POST /v1/responses`` with ``"stream": true``, and reads the reply as Server-Sent
Events (``data: {json}`` frames) until a terminal event, ``response.completed`` (or
``response.failed`` / ``response.incomplete``), carrying the final ``response`` object. An upstream
that answers that call with one plain JSON object makes every job end ``failed`` with "openai
closed the responses stream before any terminal event".

LiteLLM's other mode is its default when that config block is absent, and what
``native_background=True`` selects here: the proxy forwards ``background: true`` to the upstream
and relays ``GET /v1/responses/{id}`` to the upstream's ``GET /v1/responses/{upstream id}``, so the
*upstream* does the background work and keeps the result. S7 uses the Redis mode above.

The runner uses this module as::

    python = ensure_venv(VENV_DIR_DEFAULT)
    write_config(cfg, upstream_url="http://127.0.0.1:9100", model="bench-model",
                 redis_url="redis://127.0.0.1:6379/5")
    argv, env = command(python, port=4100, config=cfg)   # then poll HEALTH_PATH
    result = await measure_completed("http://127.0.0.1:4100", model="bench-model", jobs=500)
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

LITELLM_SPEC = "litellm[proxy]==1.108.7"
VENV_DIR_DEFAULT = Path(__file__).resolve().parent.parent / ".bench" / "litellm-venv"
MARKER_NAME = ".bench-installed"  # holds LITELLM_SPEC once the install has succeeded

# A key for the benchmark only: the proxy runs on 127.0.0.1 for the length of one run.
MASTER_KEY = "sk-bench-litellm-peer"
# Answers 200 without a key once the app has started (no database or upstream is consulted).
HEALTH_PATH = "/health/liveliness"
RESPONSES_PATH = "/v1/responses"
COMPLETIONS_PATH = "/v1/completions"
REDIS_URL_DEFAULT = "redis://127.0.0.1:6379/5"  # never db 0, which belongs to the gateway
RESULT_TTL_SECONDS = 3600  # how long the proxy keeps a background result in Redis

# Two uvicorn worker processes: the machine has 2 cores, the gateway's web tier runs 2 workers
# too, and a background job runs as an asyncio task inside the worker that accepted it, so the
# workers are also LiteLLM's whole "job runner". More processes would only contend for the
# same 2 cores (and each LiteLLM worker holds a few hundred MB).
WORKERS = 2
# uvicorn's supervisor pings each worker and kills one that has not answered for this long (its
# default is 5 s). On a loaded machine a busy LiteLLM worker can miss that, gets
# killed and restarted, and every background job it was running stays "in_progress" in Redis
# forever. The bench allows 60 s so that it measures throughput; None keeps the default.
WORKER_HEALTHCHECK_SECONDS = 60
# Each worker's Redis pool. LiteLLM's default (a blocking pool of 50 that gives up after 5 s)
# runs dry under load, and LiteLLM swallows the failed Redis call: a submit then answers 200 with
# an id whose state was never stored (404 forever), or a finished job's last update is skipped
# ("in_progress" forever). How many were lost that way: docs/measurements.md, "LiteLLM peer".
REDIS_MAX_CONNECTIONS = 1000

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "incomplete"})
# LiteLLM answers 404 both for an id whose state was never stored and, when a Redis read fails
# (its pool is exhausted under load; the error is swallowed), for one that exists. So an id
# counts as unknown only after answering nothing but 404 for this long.
UNKNOWN_AFTER_SECONDS = 5.0

# Variables of the calling environment that LiteLLM would act on and the bench must not pass:
# a DATABASE_URL would make it connect Prisma to the gateway's Postgres, REDIS_* would point its
# Redis at the gateway's database, and click reads HOST/PORT/NUM_WORKERS as option defaults.
_DROPPED_ENV = frozenset(
    {"DATABASE_URL", "DIRECT_URL", "HOST", "PORT", "NUM_WORKERS", "CONFIG_FILE_PATH", "VIRTUAL_ENV"}
)
_DROPPED_ENV_PREFIXES = ("REDIS_", "LITELLM_", "OPENAI_", "PYTHONPATH")

Log = Callable[[str], None]


# --- install ------------------------------------------------------------------------------------
def venv_python(venv_dir: Path) -> Path:
    return venv_dir / "bin" / "python"


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True)  # noqa: S603  (fixed argv: venv creation, a pinned pip install)


def ensure_venv(venv_dir: Path, log: Log = print) -> Path:
    """Creates ``venv_dir`` and installs LiteLLM in it unless a finished install is there.

    Idempotent: a marker file naming ``LITELLM_SPEC`` is written only after pip succeeded, so an
    interrupted install is redone on the next call, which takes a minute or so (the venv is
    large). Returns the venv's python.
    """
    python = venv_python(venv_dir)
    marker = venv_dir / MARKER_NAME
    if python.exists() and marker.exists() and marker.read_text().strip() == LITELLM_SPEC:
        return python
    started = time.monotonic()
    if not python.exists():
        log(f"creating {venv_dir}")
        venv_dir.parent.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "venv", str(venv_dir)])
    log(f"installing {LITELLM_SPEC} into {venv_dir}")
    _run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            LITELLM_SPEC,
        ]
    )
    marker.write_text(LITELLM_SPEC + "\n")
    log(f"{LITELLM_SPEC} installed in {time.monotonic() - started:.0f} s")
    return python


# --- configuration and start --------------------------------------------------------------------
def _api_base(upstream_url: str) -> str:
    """The upstream's OpenAI base URL (LiteLLM appends ``/responses``, ``/completions``)."""
    base = upstream_url.rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"


def config_data(
    *,
    upstream_url: str,
    model: str,
    redis_url: str,
    native_background: bool = False,
    redis_max_connections: int | None = REDIS_MAX_CONNECTIONS,
) -> dict[str, Any]:
    """The proxy's configuration as a dict (see ``write_config``)."""
    background_mode: dict[str, Any] = {"polling_via_cache": "all", "ttl": RESULT_TTL_SECONDS}
    if native_background:
        background_mode["native_background_mode"] = [model]
    redis: dict[str, Any] = {"url": redis_url}
    if redis_max_connections is not None:
        redis["max_connections"] = redis_max_connections
    return {
        "model_list": [
            {
                "model_name": model,
                "litellm_params": {
                    "model": f"openai/{model}",
                    "api_base": _api_base(upstream_url),
                    "api_key": "bench-upstream-key",
                },
            }
        ],
        # The Redis the proxy keeps background results in (and its usage counters).
        "general_settings": {"coordination_redis": redis},
        "litellm_settings": {"responses": {"background_mode": background_mode}},
    }


def write_config(
    path: Path,
    *,
    upstream_url: str,
    model: str,
    redis_url: str,
    native_background: bool = False,
    redis_max_connections: int | None = REDIS_MAX_CONNECTIONS,
) -> None:
    """Writes the proxy's config file: one model, ``openai/<model>`` at ``upstream_url``.

    ``upstream_url`` is the upstream's root (``http://127.0.0.1:9100``) or its ``/v1`` base.
    Background mode keeps results in ``redis_url`` (use a Redis db of its own, e.g. ``/5``).

    ``redis_max_connections`` sizes each worker's Redis pool (see ``REDIS_MAX_CONNECTIONS``);
    None keeps LiteLLM's default, which loses jobs under load.

    The file is JSON, which is valid YAML, so no YAML library is needed to write it.
    """
    data = config_data(
        upstream_url=upstream_url,
        model=model,
        redis_url=redis_url,
        native_background=native_background,
        redis_max_connections=redis_max_connections,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def command(
    python: Path,
    *,
    port: int,
    config: Path,
    worker_healthcheck: int | None = WORKER_HEALTHCHECK_SECONDS,
) -> tuple[list[str], dict[str, str]]:
    """The argv and the full environment that start the proxy on 127.0.0.1:``port``.

    Runs the venv's ``litellm`` console script with its default server (uvicorn) and ``WORKERS``
    processes; its access log goes to stdout as in a default deployment (the gateway's web server
    logs access too). ``worker_healthcheck``: see ``WORKER_HEALTHCHECK_SECONDS``. The proxy
    takes tens of seconds to answer ``HEALTH_PATH``.
    """
    script = python.parent / "litellm"
    argv = [
        str(python),
        str(script),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--config",
        str(config),
        "--num_workers",
        str(WORKERS),
    ]
    if worker_healthcheck is not None:
        argv += ["--timeout_worker_healthcheck", str(worker_healthcheck)]
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _DROPPED_ENV and not key.startswith(_DROPPED_ENV_PREFIXES)
    }
    env.update(
        {
            "LITELLM_MASTER_KEY": MASTER_KEY,
            # Use the price map shipped in the package: at start the proxy otherwise fetches it
            # from the internet, which this machine must not (and cannot) reach.
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_TELEMETRY_DISABLED": "true",
            "PATH": f"{python.parent}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return argv, env


# --- request bodies and replies -----------------------------------------------------------------
def auth_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}


def background_submit_body(model: str, prompt: str) -> bytes:
    return json.dumps({"model": model, "input": prompt, "background": True}).encode()


def completion_body(model: str, prompt: str) -> bytes:
    return json.dumps({"model": model, "prompt": prompt, "max_tokens": 16}).encode()


def response_path(response_id: str) -> str:
    return f"{RESPONSES_PATH}/{response_id}"


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def parse_response_id(body: bytes) -> str | None:
    """The ``id`` of a Responses API object, or None for an error or a malformed body."""
    data = _json_object(body)
    if data is None:
        return None
    response_id = data.get("id")
    return response_id if isinstance(response_id, str) and response_id else None


def response_status(body: bytes) -> str | None:
    data = _json_object(body)
    status = data.get("status") if data is not None else None
    return status if isinstance(status, str) else None


def is_terminal(body: bytes) -> bool:
    """True when a response object's status is final (completed, failed, cancelled, incomplete)."""
    return response_status(body) in TERMINAL_STATUSES


# --- measurement --------------------------------------------------------------------------------
def _excerpt(body: bytes, limit: int = 300) -> str:
    return body[:limit].decode("utf-8", "replace")


def _error_excerpt(body: bytes) -> str:
    """The job's ``error`` (or the whole body when it has none), shortened for a report."""
    data = _json_object(body)
    if data is not None and data.get("error"):
        return json.dumps(data["error"])[:300]
    return _excerpt(body)


class _Run:
    """Counters of one ``measure_completed`` call."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.submit_statuses: collections.Counter[str] = collections.Counter()
        self.submit_errors = 0
        self.first_submit_at: float | None = None
        self.last_submit_at: float | None = None
        self.first_submit_error: str | None = None
        self.completed = 0
        self.failed = 0
        self.unknown = 0  # ids that answered only 404 for UNKNOWN_AFTER_SECONDS
        self.not_found = 0  # 404 answers, transient ones included
        self.first_404_at: dict[str, float] = {}
        self.last_status: dict[str, str] = {}  # what each id last answered (status or HTTP code)
        self.pending_at_timeout: collections.Counter[str] = collections.Counter()
        self.polls = 0
        self.poll_errors = 0
        self.last_terminal_at: float | None = None
        self.first_failure: str | None = None
        self.first_poll_error: str | None = None


async def _submit_all(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    *,
    jobs: int,
    connections: int,
    deadline: float,
    run: _Run,
) -> None:
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < jobs and time.monotonic() < deadline:
            next_index += 1
            started = time.monotonic()
            if run.first_submit_at is None:
                run.first_submit_at = started
            try:
                async with session.post(url, data=body) as response:
                    payload = await response.read()
                    status = response.status
            except (TimeoutError, aiohttp.ClientError) as error:
                run.submit_statuses["error"] += 1
                run.submit_errors += 1
                run.first_submit_error = run.first_submit_error or repr(error)
                continue
            finally:
                run.last_submit_at = time.monotonic()
            run.submit_statuses[str(status)] += 1
            response_id = parse_response_id(payload) if status in (200, 202) else None
            if response_id is None:
                run.submit_errors += 1
                run.first_submit_error = run.first_submit_error or f"{status} {_excerpt(payload)}"
            else:
                run.ids.append(response_id)

    await asyncio.gather(*(worker() for _ in range(min(connections, jobs))))


async def _poll_all(
    session: aiohttp.ClientSession,
    base_url: str,
    *,
    connections: int,
    poll_interval: float,
    deadline: float,
    unknown_after: float,
    run: _Run,
) -> int:
    """Polls every submitted id until it is terminal, unknown or ``deadline``; returns how many
    were still pending at the deadline."""
    # (due time, id): each id is polled at most once per poll_interval; re-queued ids go to the
    # back, so the queue stays ordered by due time.
    pending: collections.deque[tuple[float, str]] = collections.deque(
        (0.0, response_id) for response_id in run.ids
    )
    in_hand = 0

    async def worker() -> None:
        nonlocal in_hand
        while time.monotonic() < deadline:
            if not pending:
                if not in_hand:
                    return
                # Another worker holds an id and may put it back: stay to share the tail.
                await asyncio.sleep(min(poll_interval, 0.05))
                continue
            due, response_id = pending.popleft()
            if due >= deadline:
                pending.appendleft((due, response_id))
                return
            in_hand += 1
            try:
                await _poll_once(response_id, due)
            finally:
                in_hand -= 1

    async def _poll_once(response_id: str, due: float) -> None:
        wait = due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        run.polls += 1
        try:
            async with session.get(base_url + response_path(response_id)) as response:
                payload = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as error:
            run.poll_errors += 1
            run.first_poll_error = run.first_poll_error or repr(error)
            pending.append((time.monotonic() + poll_interval, response_id))
            return
        job_status = response_status(payload) if status == 200 else None
        run.last_status[response_id] = job_status or str(status)
        if status == 404:
            run.not_found += 1
            run.first_poll_error = run.first_poll_error or f"404 {_excerpt(payload)}"
            now = time.monotonic()
            if now - run.first_404_at.setdefault(response_id, now) >= unknown_after:
                run.unknown += 1
            else:
                pending.append((now + poll_interval, response_id))
            return
        run.first_404_at.pop(response_id, None)
        if job_status in TERMINAL_STATUSES:
            run.last_terminal_at = time.monotonic()
            if job_status == "completed":
                run.completed += 1
            else:
                run.failed += 1
                run.first_failure = run.first_failure or _error_excerpt(payload)
            return
        if status != 200:
            run.poll_errors += 1
            run.first_poll_error = run.first_poll_error or f"{status} {_excerpt(payload)}"
        pending.append((time.monotonic() + poll_interval, response_id))

    await asyncio.gather(*(worker() for _ in range(max(1, min(connections, len(run.ids))))))
    run.pending_at_timeout = collections.Counter(
        run.last_status.get(response_id, "never polled") for _, response_id in pending
    )
    return len(pending)


async def measure_completed(
    base_url: str,
    *,
    model: str,
    jobs: int,
    connections: int = 64,
    poll_interval: float = 0.2,
    timeout: float = 300.0,
    prompt: str = "Say hello to the benchmark.",
    unknown_after: float = UNKNOWN_AFTER_SECONDS,
) -> dict[str, Any]:
    """Submits ``jobs`` background responses, then polls each until it is terminal.

    Submits go over ``connections`` keep-alive connections; so do the polls, each id at most
    once per ``poll_interval``. ``timeout`` bounds the whole call (submits and polls).

    Returns ``jobs``; ``submitted`` (accepted with an id); ``completed`` and ``failed`` (terminal
    statuses seen; cancelled and incomplete count as failed); ``lost`` (accepted but never seen
    terminal: still pending at the timeout, or answering only 404 for ``unknown_after`` seconds);
    ``seconds`` (first submit to the last terminal status observed); ``completed_per_s``;
    ``submit_per_s`` (accepted per second over the submit phase); and for the report
    ``submit_seconds``, ``submit_errors``, ``submit_statuses``, ``polls``, ``poll_errors``,
    ``not_found`` (404 answers), ``unknown``, ``pending_at_timeout`` (last answer of each id
    still pending at the timeout, by status) and the first error text of each kind. It never
    raises on what the proxy answers, so a broken background mode shows up in the counts.
    """
    base_url = base_url.rstrip("/")
    run = _Run()
    started = time.monotonic()
    deadline = started + timeout
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    request_timeout = aiohttp.ClientTimeout(total=min(60.0, timeout))
    async with aiohttp.ClientSession(
        connector=connector, headers=auth_headers(), timeout=request_timeout
    ) as session:
        await _submit_all(
            session,
            base_url + RESPONSES_PATH,
            background_submit_body(model, prompt),
            jobs=jobs,
            connections=connections,
            deadline=deadline,
            run=run,
        )
        still_pending = await _poll_all(
            session,
            base_url,
            connections=connections,
            poll_interval=poll_interval,
            deadline=deadline,
            unknown_after=unknown_after,
            run=run,
        )

    first = run.first_submit_at if run.first_submit_at is not None else started
    submit_seconds = (run.last_submit_at or first) - first
    seconds = (run.last_terminal_at - first) if run.last_terminal_at is not None else 0.0
    submitted = len(run.ids)
    return {
        "jobs": jobs,
        "submitted": submitted,
        "completed": run.completed,
        "failed": run.failed,
        "lost": still_pending + run.unknown,
        "seconds": round(seconds, 4),
        "completed_per_s": round(run.completed / seconds, 2) if seconds > 0 else 0.0,
        "submit_per_s": round(submitted / submit_seconds, 2) if submit_seconds > 0 else 0.0,
        "submit_seconds": round(submit_seconds, 4),
        "submit_errors": run.submit_errors,
        "submit_statuses": dict(run.submit_statuses),
        "unknown": run.unknown,
        "not_found": run.not_found,
        "pending_at_timeout": dict(run.pending_at_timeout),
        "polls": run.polls,
        "poll_errors": run.poll_errors,
        "first_submit_error": run.first_submit_error,
        "first_failure": run.first_failure,
        "first_poll_error": run.first_poll_error,
    }
