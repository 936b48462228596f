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

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.load import submit_and_follow

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


async def measure_completed(
    base_url: str, *, model: str, jobs: int, **options: Any
) -> dict[str, Any]:
    """Submits ``jobs`` background responses, then polls each until it is terminal (see
    ``harness.load.submit_and_follow`` for ``options`` and the figures)."""
    base_url = base_url.rstrip("/")
    return await submit_and_follow(
        base_url + RESPONSES_PATH,
        background_submit_body(model, "Say hello to the benchmark."),
        poll_url=lambda response_id: f"{base_url}{RESPONSES_PATH}/{response_id}",
        headers=auth_headers(),
        jobs=jobs,
        terminal=TERMINAL_STATUSES,
        **{"unknown_after": UNKNOWN_AFTER_SECONDS, **options},
    )
