"""The gateway as the drill runs it: the benchmark's production-shaped stack on private services.

Web (granian), two Celery workers and Celery beat run against the drill's own Postgres and Redis
(``drill.private_services``), with the faulty upstream as the OpenAI provider. Crash recovery
settings are shortened so a scenario takes seconds, not minutes (see ``DRILL_SETTINGS``).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.procs import Procs, wait_http
from bench.stack import PYTHON, REPO, Stack, StackConfig

DRILL_DIR = REPO / ".drill"
BEAT = "beat"

# Production defaults in brackets. A dead worker's jobs are re-queued once their lease lapses
# (10 s [60 s]) at beat's next look (every 15 s), and a hanging upstream fails a call after 8 s
# [120 s]; the drill's normal upstream answers within 3 s.
DRILL_SETTINGS = {
    "GATEWAY_JOB_LEASE_SECONDS": "10",
    "GATEWAY_UPSTREAM_TIMEOUT": "8",
    "GATEWAY_UPSTREAM_CONNECT_TIMEOUT": "2",
}


class DrillStack(Stack):
    """``bench.stack.Stack`` with beat, the faulty upstream and the drill's settings."""

    queue = "drill"

    def __init__(
        self, procs: Procs, config: StackConfig, log: Callable[[str], None], var_dir: Path
    ) -> None:
        super().__init__(procs, config, log)
        self.var_dir = var_dir
        self.var_dir.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        return {**super().env(), **DRILL_SETTINGS}

    def prepare(self) -> None:
        """Create the database, migrate it and make a virtual key (``self.key``)."""
        self._manage("migrate", "-v0")
        self.truncate()
        self.key = self._manage("create_virtual_key", "--name", "drill").strip().splitlines()[-1]

    def start_upstream(self, latency_ms: float = 0.0) -> None:
        argv = [PYTHON, "-m", "drill.faulty_upstream", "--port", str(self.upstream_port)]
        argv += ["--latency-ms", str(latency_ms), "--hang-seconds", "600"]
        self.procs.start("upstream", argv, cwd=REPO)
        wait_http(f"{self.upstream_url}/health", log=self.procs.log_path("upstream"))

    def start_beat(self) -> None:
        argv = [PYTHON, "-m", "celery", "-A", "gateway", "beat", "--loglevel", "INFO"]
        argv += ["--schedule", str(self.var_dir / "celerybeat-schedule")]
        self.procs.start(BEAT, argv, env=self.env(), cwd=REPO)

    def kill_worker(self, n: int) -> None:
        """``kill -9`` the worker's whole process group, then reap it."""
        for pid in self.procs.pids(f"worker-{n}"):
            os.killpg(pid, signal.SIGKILL)
        self.procs.stop(f"worker-{n}")

    def restart_web(self) -> None:
        self.procs.stop("web")
        self.start_web()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a query on the gateway's database."""
        return self._query(sql, params)

    def count_where(self, condition: str, params: tuple[Any, ...] = ()) -> int:
        rows = self.query(f"SELECT count(*) FROM jobs_asyncjob WHERE {condition}", params)  # noqa: S608
        return int(rows[0][0])
