"""The peer in scenario S7: the LiteLLM proxy (``LITELLM_SPEC``, in a virtualenv of its own: later
releases need packages the package index lacks, and its dependencies must not mix with the
gateway's), measured on the same fake upstream as the gateway.

- **background mode**: ``POST /v1/responses`` with ``"background": true`` answers at once with a
  ``queued`` response (id ``litellm_poll_...``); the proxy runs the call in an asyncio task
  *inside the web worker that took the request* (for which it streams the upstream's
  ``POST /v1/responses`` until ``response.completed``) and keeps its state in Redis, where
  ``GET /v1/responses/{id}`` reads it. Nothing is written to a database: a restart loses every job
  in flight, and a result lives for the cache TTL. ``config`` turns this on
  (``polling_via_cache``) and gives the proxy its Redis (``coordination_redis``).
- **plain completions**: ``POST /v1/completions``, relayed synchronously.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.load import submit_and_follow
from harness.procs import Procs, free_port
from harness.runs import Log

LITELLM_SPEC = "litellm[proxy]==1.108.7"
VENV_DIR = Path(__file__).resolve().parent.parent / ".bench" / "litellm-venv"
MARKER_NAME = ".bench-installed"  # holds LITELLM_SPEC once the install has succeeded
MODEL = "gpt-bench"  # the one model the proxy serves, at the upstream as openai/<MODEL>

# A key for the benchmark only: the proxy runs on 127.0.0.1 for the length of one run.
MASTER_KEY = "sk-bench-litellm-peer"
HEADERS = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}
# Answers 200 without a key once the app has started (no database or upstream is consulted).
HEALTH_PATH = "/health/liveliness"
RESPONSES_PATH = "/v1/responses"
COMPLETIONS_PATH = "/v1/completions"
REDIS_URL = os.environ.get("BENCH_PEER_REDIS_URL", "redis://127.0.0.1:6379/5")  # not the gateway's
RESULT_TTL_SECONDS = 3600  # how long the proxy keeps a background result in Redis

# Two uvicorn workers, as the gateway's web tier on this 2-core machine; a background job runs as
# an asyncio task inside the worker that accepted it, so they are also LiteLLM's "job runner".
WORKERS = 2
# uvicorn kills a worker that has not answered its ping for this long (5 s by default): a busy
# LiteLLM worker misses that on a loaded machine, and its background jobs stay "in_progress".
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


def ensure_venv(venv_dir: Path, log: Log = print) -> Path:
    """The python of ``venv_dir``, with LiteLLM installed; the marker naming ``LITELLM_SPEC`` is
    written once pip succeeded, so an interrupted install is done again."""
    python, marker = venv_dir / "bin" / "python", venv_dir / MARKER_NAME
    if python.exists() and marker.exists() and marker.read_text().strip() == LITELLM_SPEC:
        return python
    started = time.monotonic()
    if not python.exists():
        log(f"creating {venv_dir}")
        venv_dir.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv_dir)], check=True)  # noqa: S603
    log(f"installing {LITELLM_SPEC} into {venv_dir}")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, LITELLM_SPEC], check=True)  # noqa: S603 - a pinned install
    marker.write_text(LITELLM_SPEC + "\n")
    log(f"{LITELLM_SPEC} installed in {time.monotonic() - started:.0f} s")
    return python


def config(upstream_url: str, model: str, redis_url: str = REDIS_URL) -> dict[str, Any]:
    """The proxy's configuration: one model, ``openai/<model>`` at the upstream's ``/v1`` base
    (``upstream_url`` is its root or that base), background results kept in ``redis_url`` (with
    the proxy's usage counters)."""
    base = upstream_url.rstrip("/").removesuffix("/v1") + "/v1"
    params = {"model": f"openai/{model}", "api_base": base, "api_key": "bench-upstream-key"}
    background = {"polling_via_cache": "all", "ttl": RESULT_TTL_SECONDS}
    redis = {"url": redis_url, "max_connections": REDIS_MAX_CONNECTIONS}
    return {
        "model_list": [{"model_name": model, "litellm_params": params}],
        "general_settings": {"coordination_redis": redis},
        "litellm_settings": {"responses": {"background_mode": background}},
    }


def command(python: Path, *, port: int, config_file: Path) -> tuple[list[str], dict[str, str]]:
    """The argv and the full environment that start the proxy on 127.0.0.1:``port``: the venv's
    ``litellm`` script, its default server (uvicorn) with ``WORKERS`` processes, its access log
    on stdout as in a default deployment."""
    argv = [str(python), str(python.parent / "litellm"), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--config", str(config_file), "--num_workers", str(WORKERS)]
    argv += ["--timeout_worker_healthcheck", str(WORKER_HEALTHCHECK_SECONDS)]
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _DROPPED_ENV and not key.startswith(_DROPPED_ENV_PREFIXES)
    }
    return argv, env | {
        "LITELLM_MASTER_KEY": MASTER_KEY,
        # The price map shipped in the package: at start the proxy otherwise fetches it from the
        # internet, which this machine must not (and cannot) reach.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY_DISABLED": "true",
        "PATH": f"{python.parent}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
    }


def start(procs: Procs, upstream_url: str, log: Log) -> str:
    """Install (once), configure and start the proxy as ``peer`` (in ``.bench``, beside its venv);
    its base URL once it answers (it takes tens of seconds)."""
    python = ensure_venv(VENV_DIR, log=log)
    config_file = VENV_DIR.parent / "litellm-config.yaml"
    # JSON is valid YAML, so no YAML library is needed to write it.
    config_file.write_text(json.dumps(config(upstream_url, MODEL), indent=2) + "\n")
    port = free_port()
    argv, env = command(python, port=port, config_file=config_file)
    log("starting the LiteLLM proxy")
    procs.start("peer", argv, env=env, cwd=VENV_DIR.parent)
    procs.wait_http("peer", f"http://127.0.0.1:{port}{HEALTH_PATH}", timeout=180)
    return f"http://127.0.0.1:{port}"


def background_body(model: str) -> bytes:
    body = {"model": model, "input": "Say hello to the benchmark.", "background": True}
    return json.dumps(body).encode()


def completion_body(model: str) -> bytes:
    body = {"model": model, "prompt": "Say hello to the benchmark.", "max_tokens": 16}
    return json.dumps(body).encode()


async def measure_completed(base_url: str, *, model: str, jobs: int, **options: Any) -> Any:
    """``harness.load.submit_and_follow`` of ``jobs`` background responses."""
    base_url = base_url.rstrip("/")
    return await submit_and_follow(
        base_url + RESPONSES_PATH,
        background_body(model),
        poll_url=lambda response_id: f"{base_url}{RESPONSES_PATH}/{response_id}",
        headers=HEADERS,
        jobs=jobs,
        terminal=TERMINAL_STATUSES,
        **{"unknown_after": UNKNOWN_AFTER_SECONDS, **options},
    )
