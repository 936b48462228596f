"""Everything a benchmark run starts on 127.0.0.1, and the queries it measures with.

The gateway runs in its production shape: granian serving ``gateway.wsgi`` on Postgres, and
Celery worker processes on Redis, with the fake upstream (``bench.upstream``) as the provider.
The bare reference handlers (``bench.reference``) run under uvicorn with as many processes as the
gateway's web server. Each run has its own database and Redis database number, so nothing it does
touches a developer's data.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench import reference
from bench.procs import Procs, free_port, run_manage, wait_http
from gateway.management.commands.rungateway import web_command

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
JOBS_TABLE = "jobs_asyncjob"
TERMINAL = ("completed", "failed")
BENCH_MODEL = "openai/gpt-bench"
UPSTREAM_KEY = "sk-bench-upstream-key"


@dataclass(frozen=True)
class StackConfig:
    admin_url: str = "postgres://root@127.0.0.1:5432/postgres"
    database: str = "gateway_bench"
    redis_url: str = "redis://127.0.0.1:6379/3"
    web_processes: int = 2
    web_threads: int = 12  # rungateway's default
    workers: int = 2
    # Per worker process. At 1 s upstream latency the workers complete at most this many jobs
    # per second each, fewer than they complete at 0 latency (bench/RESULTS.md, S2), so S2's 1 s
    # rate needs room for all its 5,000 jobs at once.
    max_in_flight: int = 4096

    @property
    def database_url(self) -> str:
        base, _, _ = self.admin_url.rpartition("/")
        return f"{base}/{self.database}"


def gateway_env(
    config: StackConfig, *, upstream_url: str, var_dir: Path, queue: str
) -> dict[str, str]:
    """The gateway's environment: production services, the fake upstream as OpenAI."""
    return {
        "DATABASE_URL": config.database_url,
        "CELERY_BROKER_URL": config.redis_url,
        "GATEWAY_QUEUE": queue,
        "GATEWAY_VAR_DIR": str(var_dir),
        "SECRET_KEY": "bench-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "OPENAI_BASE_URL": f"{upstream_url}/v1",
        "GATEWAY_WORKER_MAX_IN_FLIGHT": str(config.max_in_flight),
        "GATEWAY_RETRIES": "0",
        "DJANGO_SETTINGS_MODULE": "gateway.settings",
    }


def ensure_database(config: StackConfig) -> None:
    with psycopg.connect(config.admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (config.database,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{config.database}"')  # type: ignore[arg-type]


class Stack:
    """Starts and stops the run's processes; ``procs`` stops whatever is left on exit."""

    queue = "bench"  # the Celery queue, and the workers' node names

    def __init__(self, procs: Procs, config: StackConfig, log: Callable[[str], None]) -> None:
        self.procs = procs
        self.config = config
        self.log = log
        self.upstream_port = free_port()
        self.web_port = free_port()
        self.reference_port = free_port()
        self.var_dir = REPO / ".bench" / "var"
        self.var_dir.mkdir(parents=True, exist_ok=True)
        self.key = ""

    # --- addresses ------------------------------------------------------------------------------
    @property
    def upstream_url(self) -> str:
        return f"http://127.0.0.1:{self.upstream_port}"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def reference_url(self) -> str:
        return f"http://127.0.0.1:{self.reference_port}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}

    def env(self) -> dict[str, str]:
        return gateway_env(
            self.config, upstream_url=self.upstream_url, var_dir=self.var_dir, queue=self.queue
        )

    # --- setup ----------------------------------------------------------------------------------
    def prepare(self) -> None:
        ensure_database(self.config)
        self._manage("migrate", "-v0")
        self.truncate()
        name = f"bench-{int(time.time())}"
        self.key = self._manage("create_virtual_key", "--name", name).strip().splitlines()[-1]
        reference.setup(self.config.database_url)
        reference.truncate(self.config.database_url)

    def _manage(self, *args: str) -> str:
        return run_manage(PYTHON, REPO, self.env(), *args)

    # --- processes ------------------------------------------------------------------------------
    def start_upstream(self, latency_ms: float = 0.0) -> None:
        argv = [PYTHON, "-m", "bench.upstream", "--port", str(self.upstream_port)]
        self.procs.start("upstream", [*argv, "--latency-ms", str(latency_ms)], cwd=REPO)
        wait_http(f"{self.upstream_url}/health", log=self.procs.log_path("upstream"))

    def start_web(self) -> None:
        """The web server exactly as ``rungateway`` and docker-compose.yml start it."""
        argv = web_command(
            PYTHON,
            host="127.0.0.1",
            port=self.web_port,
            workers=self.config.web_processes,
            threads=self.config.web_threads,
        )
        self.procs.start("web", argv, env=self.env(), cwd=REPO)
        wait_http(f"{self.web_url}/health", log=self.procs.log_path("web"))

    def start_workers(self) -> None:
        for n in range(self.config.workers):
            self.start_worker(n)

    def start_worker(self, n: int) -> None:
        argv = [PYTHON, "-m", "celery", "-A", "gateway", "worker", "-Q", self.queue]
        argv += ["--loglevel", "WARNING", "-n", f"{self.queue}{n}@%h"]
        self.procs.start(f"worker-{n}", argv, env=self.env(), cwd=REPO)

    def wait_workers_ready(self, submit_one: Callable[[], None], timeout: float = 60.0) -> None:
        """Run one job through, so the workers are up and connected before a measurement."""
        self.truncate()
        submit_one()
        if self.wait_terminal(1, timeout, progress=lambda _: None) < 1:
            raise RuntimeError("the workers did not finish a first job in time")
        self.truncate()

    def stop_workers(self) -> None:
        for n in range(self.config.workers):
            self.procs.stop(f"worker-{n}")

    def worker_pids(self) -> list[int]:
        return self.procs.pids("worker-")

    def start_reference(self) -> None:
        argv = [PYTHON, "-m", "bench.reference", "--port", str(self.reference_port)]
        argv += ["--workers", str(self.config.web_processes)]
        argv += ["--database-url", self.config.database_url]
        argv += ["--redis-url", self.config.redis_url]
        self.procs.start("reference", argv, cwd=REPO)
        wait_http(f"{self.reference_url}/health", log=self.procs.log_path("reference"))

    # --- the upstream's controls ----------------------------------------------------------------
    def _upstream(self, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(  # noqa: S310 - our own loopback server
            f"{self.upstream_url}{path}", data=data, method="POST" if data else "GET"
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            answer: dict[str, Any] = json.loads(response.read() or b"{}")
        return answer

    def set_latency(self, ms: float) -> None:
        self._upstream("/__bench/latency", {"ms": ms})
        self._upstream("/__bench/reset", {})

    def upstream_stats(self) -> dict[str, Any]:
        return self._upstream("/__bench/stats")

    # --- the job table --------------------------------------------------------------------------
    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.config.database_url, autocommit=True) as conn:
            cursor = conn.execute(sql, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def truncate(self) -> None:
        self._query(f"TRUNCATE {JOBS_TABLE}")

    def counts(self) -> dict[str, int]:
        rows = self._query(f"SELECT status, count(*) FROM {JOBS_TABLE} GROUP BY status")  # noqa: S608
        return {status: int(n) for status, n in rows}

    def wait_terminal(self, expected: int, timeout: float, progress: Callable[[int], None]) -> int:
        """Wait until ``expected`` jobs are completed or failed; returns how many are."""
        deadline = time.monotonic() + timeout
        done = 0
        while time.monotonic() < deadline:
            counts = self.counts()
            done = sum(counts.get(status, 0) for status in TERMINAL)
            progress(done)
            if done >= expected:
                break
            time.sleep(0.25)
        return done

    def drain_window(self) -> tuple[float, int]:
        """Seconds from the first claim to the last terminal write, and the jobs finished."""
        rows = self._query(
            f"SELECT extract(epoch FROM max(completed_at) - min(started_at)), count(*) "  # noqa: S608
            f"FROM {JOBS_TABLE} WHERE status IN ('completed', 'failed')"
        )
        seconds, count = rows[0]
        return float(seconds or 0.0), int(count)

    def steady_rate(self) -> float:
        """Jobs finished per second between the 10th and the 90th percentile of completion.

        The start (workers booting one after the other) and the tail (the last wave of calls)
        are left out, so this is the rate the workers keep up once running.
        """
        rows = self._query(
            "SELECT percentile_cont(0.1) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at)), "  # noqa: S608
            "percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at)), "
            f"count(*) FROM {JOBS_TABLE} WHERE status IN ('completed', 'failed')"
        )
        first, last, count = rows[0]
        if not count or first is None or last <= first:
            return 0.0
        return 0.8 * int(count) / (float(last) - float(first))

    def added_latencies_ms(self, upstream_ms: float) -> list[float]:
        """Per completed job: completed_at - created_at - the upstream's latency, in ms."""
        rows = self._query(
            f"SELECT extract(epoch FROM completed_at - created_at) * 1000 "  # noqa: S608
            f"FROM {JOBS_TABLE} WHERE status = 'completed'"
        )
        return [float(ms) - upstream_ms for (ms,) in rows]

    def latency_parts_ms(self, upstream_ms: float) -> dict[str, list[float]]:
        """Where added latency goes: submit to claim, and claim to terminal write minus the call."""
        rows = self._query(
            f"SELECT extract(epoch FROM started_at - created_at) * 1000, "  # noqa: S608
            f"extract(epoch FROM completed_at - started_at) * 1000 "
            f"FROM {JOBS_TABLE} WHERE status = 'completed'"
        )
        return {
            "submit_to_claim": [float(a) for a, _ in rows],
            "claim_to_done_minus_upstream": [float(b) - upstream_ms for _, b in rows],
        }

    def completed_job_id(self) -> str | None:
        rows = self._query(f"SELECT id FROM {JOBS_TABLE} WHERE status = 'completed' LIMIT 1")  # noqa: S608
        return str(rows[0][0]) if rows else None
