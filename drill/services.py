"""The servers the drill runs itself on free ports of 127.0.0.1: its own Postgres cluster and
Redis server, which it stops and starts again to inject faults (the machine's shared ones stay
untouched), and a webhook receiver.

The cluster lives in a fresh directory under ``.drill/`` and is thrown away at the end; Redis
keeps nothing on disk. Postgres refuses to run as root, so as root both ``initdb`` and the server
run as the ``postgres`` user (``setpriv`` drops to it and then execs, so the server is still the
leader of the process group ``Procs`` started).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from harness.procs import Procs, free_port

PG_BIN = Path(os.environ.get("DRILL_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "drill"  # the cluster's superuser
SERVICE_ACCOUNT = "postgres"  # the system user the cluster runs as when the drill is root


def as_service_account() -> list[str]:
    """The command prefix that runs a program as the cluster's owner (nothing unless root)."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={SERVICE_ACCOUNT}", f"--regid={SERVICE_ACCOUNT}", "--init-groups"]


def _start(procs: Procs, name: str, argv: list[str], probe: list[str]) -> None:
    """Start ``argv`` as ``name``, then wait until the client command ``probe`` succeeds."""

    def answers() -> bool:
        return subprocess.run(probe, capture_output=True, check=False).returncode == 0  # noqa: S603

    procs.start(name, argv)
    procs.wait_until(name, answers, f"answer to {probe[0]}")


class PrivatePostgres:
    """One throwaway cluster: ``create()`` (which starts it) once, then ``stop()`` and ``start()``
    as often as needed."""

    name = "postgres"

    def __init__(self, procs: Procs, parent: Path) -> None:
        self.procs = procs
        self.port = free_port()
        parent.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="pg-", dir=parent))
        self.data = self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgres://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def create(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, SERVICE_ACCOUNT, SERVICE_ACCOUNT)
        initdb = [*as_service_account(), str(PG_BIN / "initdb"), "--pgdata", str(self.data)]
        initdb += ["--username", PG_USER, "--auth", "trust", "--encoding", "UTF8", "--no-sync"]
        done = subprocess.run(initdb, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr[-2000:]}")
        self.start()

    def start(self) -> None:
        argv = [*as_service_account(), str(PG_BIN / "postgres"), "-D", str(self.data)]
        argv += ["-p", str(self.port), "-c", "listen_addresses=127.0.0.1"]
        argv += ["-c", "unix_socket_directories=", "-c", "max_connections=300"]
        # A clean shutdown checkpoints anyway, and this cluster is thrown away: skipping fsync
        # spares the shared disk without changing what the gateway sees.
        argv += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
        _start(self.procs, self.name, argv, [str(PG_BIN / "pg_isready"), "-d", self.url()])

    def logged_errors(self) -> Counter[str]:
        """ERROR lines of the server's log so far, by message (a deadlock shows up here)."""
        path = self.procs.log_path(self.name)
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return Counter(line.split("ERROR:", 1)[1].strip() for line in lines if " ERROR: " in line)

    def stop(self) -> None:
        """A fast shutdown: open sessions are cut, as when a database server restarts."""
        for pid in self.procs.pids(self.name):
            os.kill(pid, signal.SIGINT)
        self.procs.stop(self.name, timeout=30.0)

    def remove(self) -> None:
        """Stop the server if it runs and delete the cluster's files."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """A Redis server that keeps nothing on disk: a restart forgets every queued message."""

    name = "redis"

    def __init__(self, procs: Procs) -> None:
        self.procs = procs
        self.port = free_port()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        _start(self.procs, self.name, argv, ["redis-cli", "-u", self.url(), "ping"])

    def stop(self) -> None:
        self.procs.stop(self.name)


PATH = "/hooks"


class Arrivals(list[tuple[str, str | None, float]]):
    """Every POST the receiver got, in order: its ``webhook-id``, the job a verified body names
    (None: not verified), and when it came (``time.monotonic()``)."""

    def by_job(self) -> dict[str, list[str]]:
        """The ``webhook-id`` of each verified POST, by the job it names."""
        by_job: dict[str, list[str]] = defaultdict(list)
        for webhook_id, job_id, _ in self:
            if job_id is not None:
                by_job[job_id].append(webhook_id)
        return by_job

    def unnotified(self, job_ids: list[str]) -> list[str]:
        """The jobs no verified notice has named yet."""
        by_job = self.by_job()
        return [job_id for job_id in job_ids if job_id not in by_job]

    def arrived_again(self, webhook_ids: list[str], after: float) -> int:
        """How many of these ``webhook-id``s arrived (again) at or after ``after``."""
        return len(set(webhook_ids) & {webhook_id for webhook_id, _, at in self if at >= after})

    def summary(self, job_ids: list[str]) -> dict[str, Any]:
        """The notices of these (accepted) jobs: at least once each, duplicates counted."""
        by_job, unnotified = self.by_job(), self.unnotified(job_ids)
        return {
            "received": len(self),
            "invalid_signatures": len(self) - sum(len(ids) for ids in by_job.values()),
            "jobs_notified": len(job_ids) - len(unnotified),
            "unnotified": len(unnotified),
            "unnotified_ids": unnotified[:20],
            "duplicates": sum(len(ids) - 1 for ids in by_job.values()),
            "jobs_notified_more_than_once": sum(1 for ids in by_job.values() if len(ids) > 1),
            "jobs_with_several_webhook_ids": sum(1 for ids in by_job.values() if len(set(ids)) > 1),
            "notices_of_unknown_jobs": sum(
                len(ids) for job_id, ids in by_job.items() if job_id not in job_ids
            ),
        }


class WebhookReceiver:
    """An aiohttp server on ``127.0.0.1:port``, on the running loop; use as ``async with``.

    It checks each POST's Standard Webhooks signature with the endpoint's secret and records its
    ``webhook-id`` (the delivery's id, the same on every attempt) and, when the signature holds,
    the job it names. Until ``release()`` it holds every answer back (``held``: their
    ``webhook-id``s): a slow receiver, so the gateway's sends are in flight when the drill kills
    the worker that made them. Then it answers 200 to a verified notice, 400 to any other POST.
    """

    def __init__(self, secret: str, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}{PATH}"
        self.arrivals = Arrivals()
        self.held: list[str] = []  # the webhook-ids of the POSTs waiting for their answer
        self._webhook = Webhook(secret)
        self._released = asyncio.Event()
        app = web.Application()
        app.router.add_post(PATH, self._handle)
        self._runner = web.AppRunner(app, access_log=None)

    def release(self) -> None:
        self._released.set()

    async def _handle(self, request: web.Request) -> web.Response:
        body, webhook_id = await request.read(), request.headers.get("webhook-id", "")
        try:
            notice = self._webhook.verify(body, dict(request.headers))
            job_id: str | None = str(notice["data"]["id"])
        except (WebhookVerificationError, KeyError, TypeError, ValueError):
            job_id = None
        self.arrivals.append((webhook_id, job_id, time.monotonic()))
        self.held.append(webhook_id)
        try:
            await self._released.wait()
        finally:
            self.held.remove(webhook_id)
        return web.Response(status=200 if job_id is not None else 400)

    async def __aenter__(self) -> WebhookReceiver:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()
        await self._runner.cleanup()
