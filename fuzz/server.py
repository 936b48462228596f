"""A throwaway gateway for a fuzzing run: its web process on 127.0.0.1, a scratch SQLite database
and the embedded filesystem broker in a temporary GATEWAY_VAR_DIR, migrated, with one virtual key.

No worker runs: accepted jobs stay pending, which is all the API document promises for a submit.
The provider points at a closed local port, so nothing could leave the machine anyway.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Procs, free_port, run_manage, wait_http
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


def start_gateway(procs: Procs, var_dir: Path) -> Gateway:
    """Migrate the scratch database, make a key and start the web server as rungateway does."""
    env = gateway_env(var_dir)
    run_manage(PYTHON, REPO, env, "migrate", "-v0")
    key = run_manage(PYTHON, REPO, env, "create_virtual_key", "--name", "fuzz").splitlines()[-1]
    port = free_port()
    argv = web_command(
        PYTHON, host="127.0.0.1", port=port, workers=WEB_PROCESSES, threads=WEB_THREADS
    )
    procs.start("web", argv, env=env, cwd=var_dir)
    base_url = f"http://127.0.0.1:{port}"
    wait_http(f"{base_url}/health", log=procs.log_path("web"))
    return Gateway(base_url=base_url, key=key, log=procs.log_path("web"))
