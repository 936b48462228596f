"""A throwaway gateway for a fuzzing run: its web process on 127.0.0.1, a scratch SQLite database
and the embedded filesystem broker in a temporary GATEWAY_VAR_DIR, migrated, with one virtual key.

No worker runs: accepted jobs stay pending, which is all the API document promises for a submit.
The provider points at a closed local port, so nothing could leave the machine anyway.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Procs, free_port, wait_http
from gateway.management.commands.rungateway import web_command

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
WEB_PROCESSES = 1
WEB_THREADS = 4
# Not a real credential: the fuzzed gateway only needs its "openai" provider to be configured.
FUZZ_PROVIDER_KEY = "sk-fuzz-provider-key-not-a-secret"


@dataclass
class Gateway:
    """A running gateway: where it listens and the virtual key to call it with."""

    base_url: str
    key: str
    log: Path


def gateway_env(var_dir: Path) -> dict[str, str]:
    """Everything the gateway reads, set explicitly, so nothing the shell exports leaks in."""
    return {
        "DJANGO_SETTINGS_MODULE": "gateway.settings",
        "GATEWAY_VAR_DIR": str(var_dir),
        "DATABASE_URL": f"sqlite:///{var_dir / 'gateway.sqlite3'}",
        "CELERY_BROKER_URL": "filesystem://",
        "GATEWAY_QUEUE": "fuzz",
        "OPENAI_API_KEY": FUZZ_PROVIDER_KEY,
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "LOG_LEVEL": "WARNING",
        # The web process runs in the var dir (kombu's filesystem transport writes ./control).
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(  # noqa: S603 - our own fixed command
        [PYTHON, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {args[0]} failed: {done.stderr[-2000:]}")
    return done.stdout


def start_gateway(procs: Procs, var_dir: Path) -> Gateway:
    """Migrate the scratch database, make a key and start the web server as rungateway does."""
    env = {**os.environ, **gateway_env(var_dir)}
    _manage(env, "migrate", "-v0")
    key = _manage(env, "create_virtual_key", "--name", "fuzz").strip().splitlines()[-1]
    port = free_port()
    argv = web_command(
        PYTHON, host="127.0.0.1", port=port, workers=WEB_PROCESSES, threads=WEB_THREADS
    )
    procs.start("web", argv, env=gateway_env(var_dir), cwd=var_dir)
    base_url = f"http://127.0.0.1:{port}"
    wait_http(f"{base_url}/health", log=procs.log_path("web"))
    return Gateway(base_url=base_url, key=key, log=procs.log_path("web"))
