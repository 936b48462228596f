"""The one stack: the gateway's environment and its processes on 127.0.0.1, in production shape.

``StackConfig`` says where the database, the broker, the var dir and the upstream are; the
environment every process gets is built from it alone, so nothing the shell exports about a
gateway leaks in. ``Stack`` starts the web server as ``rungateway`` does (granian), Celery
workers and beat through the launcher (``harness.procs``), each from the var dir (kombu's
filesystem transport writes ``./control`` there), and reads the job table on Postgres.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from gateway.management.commands.rungateway import web_command
from gateway.metrics_dir import reset_metrics_dir
from harness.procs import Procs, free_port, request_json
from harness.upstream import UPSTREAM_ANTHROPIC_KEY, UPSTREAM_OPENAI_KEY, control

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
JOBS_TABLE = "jobs_asyncjob"
# Every limit and a budget (README, "Limits" and "Budgets and spend"), none of them reachable:
# a key made with these pays for every check at submit and is never refused.
UNREACHED_LIMITS = (
    *("--requests-per-minute", str(10**9), "--tokens-per-minute", str(10**9)),
    *("--max-pending", str(10**9), "--budget", str(10**9), "--budget-period", "monthly"),
)
# What configures a gateway, or a provider it would call: never inherited from the shell.
GATEWAY_VARIABLE = re.compile(
    r"(GATEWAY|CELERY|DJANGO|DB)_\w+|\w+_(API_KEY|BASE_URL)|DATABASE_URL|SECRET_KEY|ALLOWED_HOSTS"
    r"|LOG_LEVEL|LOG_FORMAT|HOST|PORT|WEB_CONCURRENCY|WEB_THREADS|PROMETHEUS_MULTIPROC_DIR"
)
WORKER_STOP_SECONDS = 45.0  # a worker drains its calls in flight for up to 30 s on SIGTERM


@dataclass(frozen=True)
class StackConfig:
    database_url: str  # postgres:// or sqlite:///
    var_dir: Path
    queue: str  # the Celery queue, and the workers' node names
    broker_url: str = ""  # none: the embedded filesystem broker under var_dir
    upstream_url: str = "http://127.0.0.1:9"  # a closed port unless a fake upstream runs
    secret_key: str = "harness-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"  # noqa: S105
    web_processes: int = 2
    web_threads: int = 12  # rungateway's default
    workers: int = 1
    worker_log_level: str = "WARNING"  # Celery's: INFO logs each message, and the ready line
    settings: Mapping[str, str] = field(default_factory=dict)  # further GATEWAY_* settings

    @property
    def metrics_dir(self) -> Path:
        """Where every process of the stack writes its metric samples."""
        return Path(self.settings.get("GATEWAY_METRICS_DIR", self.var_dir / "metrics"))

    def env(self) -> dict[str, str]:
        """The whole environment of every gateway process; the processes run in the var dir, so
        the project comes from the path."""
        inherited = {k: v for k, v in os.environ.items() if not GATEWAY_VARIABLE.fullmatch(k)}
        return inherited | {
            "DJANGO_SETTINGS_MODULE": "gateway.settings",
            "SECRET_KEY": self.secret_key,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": self.database_url,
            "GATEWAY_VAR_DIR": str(self.var_dir),
            "GATEWAY_QUEUE": self.queue,
            "GATEWAY_METRICS_DIR": str(self.metrics_dir),
            "OPENAI_API_KEY": UPSTREAM_OPENAI_KEY,
            "OPENAI_BASE_URL": f"{self.upstream_url}/v1",
            "ANTHROPIC_API_KEY": UPSTREAM_ANTHROPIC_KEY,
            "ANTHROPIC_BASE_URL": self.upstream_url,
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), inherited.get("PYTHONPATH")])),
            **({"CELERY_BROKER_URL": self.broker_url} if self.broker_url else {}),
            **self.settings,
        }


def ensure_database(database_url: str) -> None:
    """Create the Postgres database of ``database_url`` unless it exists."""
    server, _, name = database_url.rpartition("/")
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]


class Stack:
    """Starts and stops one gateway's processes; ``procs`` stops whatever is left on exit."""

    def __init__(self, procs: Procs, config: StackConfig) -> None:
        self.procs = procs
        self.config = config
        self.key = ""
        config.var_dir.mkdir(parents=True, exist_ok=True)
        reset_metrics_dir(config.metrics_dir)
        self.web_url = f"http://127.0.0.1:{free_port()}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}

    def manage(self, *args: str) -> str:
        """``manage.py args`` in the stack's environment; its stdout. RuntimeError on failure."""
        argv = [PYTHON, str(REPO / "manage.py"), *args]
        done = subprocess.run(  # noqa: S603 - our own fixed command
            argv, cwd=self.config.var_dir, env=self.config.env(), capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {args[0]} failed: {done.stderr[-2000:]}")
        return done.stdout

    def prepare(self, key_name: str, *key_options: str) -> None:
        """Migrate and make a virtual key (``self.key``) with ``create_virtual_key``'s options."""
        self.manage("migrate", "-v0")
        made = self.manage("create_virtual_key", "--name", key_name, *key_options)
        self.key = made.strip().splitlines()[-1]

    # --- processes ------------------------------------------------------------------------------
    def _start(self, name: str, argv: list[str]) -> None:
        self.procs.start(name, argv, env=self.config.env(), cwd=self.config.var_dir)

    def start_upstream(self) -> None:
        """The fake upstream as a process of its own, at ``config.upstream_url``."""
        port = self.config.upstream_url.rsplit(":")[-1]
        self.procs.start("upstream", [PYTHON, "-m", "harness.upstream", "--port", port], cwd=REPO)
        self.procs.wait_http("upstream", f"{self.config.upstream_url}/health")

    def start_web(self) -> None:
        """The web server exactly as ``rungateway`` and docker-compose.yml start it."""
        port = int(self.web_url.rsplit(":", 1)[1])
        processes, threads = self.config.web_processes, self.config.web_threads
        argv = web_command(PYTHON, host="127.0.0.1", port=port, workers=processes, threads=threads)
        self._start("web", argv)
        self.procs.wait_http("web", f"{self.web_url}/health")

    def restart_web(self) -> None:
        self.procs.stop("web")
        self.start_web()

    def start_worker(self, n: int, log_level: str = "") -> None:
        """Worker ``n``; ``log_level`` (Celery's) instead of the config's, for one worker."""
        level, node = log_level or self.config.worker_log_level, f"{self.config.queue}-{n}@%h"
        celery = [PYTHON, "-m", "celery", "-A", "gateway"]
        self._start(f"worker-{n}", [*celery, "worker", "--loglevel", level, "-n", node])

    def start_workers(self, ready_with: str = "") -> None:
        """All the workers; with a model, until they have run a first job of it."""
        for n in range(self.config.workers):
            self.start_worker(n)
        if ready_with:
            self.wait_workers_ready(ready_with)

    def stop_workers(self) -> dict[str, int | None]:
        """SIGTERM each worker and wait for it to drain and exit; their exit codes by name."""
        names = [f"worker-{n}" for n in range(self.config.workers)]
        return {name: self.procs.stop(name, timeout=WORKER_STOP_SECONDS) for name in names}

    def kill_worker(self, n: int) -> None:
        """``kill -9`` the worker's whole process group, then reap it."""
        for pid in self.procs.pids(f"worker-{n}"):
            os.killpg(pid, signal.SIGKILL)
        self.procs.stop(f"worker-{n}")

    def worker_pids(self) -> list[int]:
        return self.procs.pids("worker-")

    def start_beat(self) -> None:
        schedule = str(self.config.var_dir / "celerybeat-schedule")
        self._start(
            "beat", [PYTHON, "-m", "celery", "-A", "gateway", "beat", "--schedule", schedule]
        )

    def forget_queue(self) -> None:
        """Leftover messages of this stack's queue must not pile up in a shared Redis."""
        if not self.config.broker_url.startswith("redis://"):
            return
        import redis

        client = redis.Redis.from_url(self.config.broker_url)
        try:
            for name in client.scan_iter(match=f"*{self.config.queue}*"):
                client.delete(name)
        finally:
            client.close()

    # --- the upstream and the API ---------------------------------------------------------------
    def set_latency(self, ms: float) -> None:
        control(self.config.upstream_url, "latency", {"ms": ms})
        control(self.config.upstream_url, "reset")

    def upstream_stats(self) -> dict[str, Any]:
        return control(self.config.upstream_url, "stats")

    def wait_workers_ready(self, model: str, timeout: float = 60.0) -> None:
        """Run one job through at no latency, so the workers are up before a measurement."""
        latency = self.upstream_stats()["latency_ms"]
        self.set_latency(0)
        self.truncate()
        body = json.dumps({"model": model, "prompt": "ready?", "max_tokens": 1}).encode()
        request_json(f"{self.web_url}/v1/async/completions", body, self.auth)
        if self.wait_terminal(1, timeout) < 1:
            raise RuntimeError("the workers did not finish a first job in time")
        self.truncate()
        self.set_latency(latency)

    # --- the job table (Postgres) ---------------------------------------------------------------
    def query(
        self, sql: str, params: tuple[Any, ...] = (), *, quiet: bool = False
    ) -> list[tuple[Any, ...]]:
        """Rows of a query on the gateway's database; with ``quiet``, none while it is away."""
        try:
            with psycopg.connect(self.config.database_url, autocommit=True, connect_timeout=5) as c:
                cursor = c.execute(sql, params)  # type: ignore[arg-type]
                return cursor.fetchall() if cursor.description else []
        except psycopg.Error:
            if quiet:
                return []
            raise

    def count_by(self, table: str, *columns: str, where: str = "true") -> dict[str, Any]:
        """Rows of ``table`` counted by one column, or by two (nested); none while it is away."""
        names = ", ".join(columns)
        sql = f"SELECT {names}, count(*) FROM {table} WHERE {where} GROUP BY {names}"  # noqa: S608
        counts: dict[str, Any] = {}
        for *keys, n in self.query(f"{sql} ORDER BY {names}", quiet=True):
            inner = counts
            for key in keys[:-1]:
                inner = inner.setdefault(str(key), {})
            inner[str(keys[-1])] = int(n)
        return counts

    def truncate(self) -> None:
        self.query(f"TRUNCATE {JOBS_TABLE}")

    def count_where(self, condition: str, params: tuple[Any, ...] = ()) -> int:
        rows = self.query(f"SELECT count(*) FROM {JOBS_TABLE} WHERE {condition}", params)  # noqa: S608
        return int(rows[0][0])

    def wait_terminal(
        self,
        expected: int,
        timeout: float,
        progress: Callable[[int], None] = lambda _: None,
        where: str = "true",
        every: float = 0.25,
    ) -> int:
        """Until ``expected`` jobs (of those ``where`` says) are completed or failed; how many."""
        deadline = time.monotonic() + timeout
        while True:
            done = self.count_where(f"({where}) AND status IN ('completed', 'failed')")
            progress(done)
            if done >= expected or time.monotonic() > deadline:
                return done
            time.sleep(every)
