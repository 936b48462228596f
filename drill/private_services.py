"""The drill's own Postgres cluster and Redis server, on free ports of 127.0.0.1.

The drill stops and restarts them to inject faults, so it never uses the machine's shared
services. The cluster lives in a fresh directory under ``.drill/`` and is thrown away at the end;
Redis keeps nothing on disk. Postgres refuses to run as root, so as root both ``initdb`` and the
server run as the ``postgres`` user (``setpriv`` drops to it and then execs, so the server is
still the leader of the process group ``Procs`` started).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import psycopg
import redis

from harness.procs import Procs, free_port

PG_BIN = Path(os.environ.get("DRILL_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "drill"  # the cluster's superuser
SERVICE_ACCOUNT = "postgres"  # the system user the cluster runs as when the drill is root


def as_service_account() -> list[str]:
    """The command prefix that runs a program as the cluster's owner (nothing unless root)."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={SERVICE_ACCOUNT}", f"--regid={SERVICE_ACCOUNT}", "--init-groups"]


def _give_to_service_account(path: Path) -> None:
    if os.geteuid() == 0:
        account = pwd.getpwnam(SERVICE_ACCOUNT)
        os.chown(path, account.pw_uid, account.pw_gid)


class PrivatePostgres:
    """One throwaway cluster: ``create()`` once, then ``start()``/``stop()`` as often as needed."""

    name = "postgres"

    def __init__(self, procs: Procs, parent: Path) -> None:
        self.procs = procs
        parent.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="pg-", dir=parent))
        self.data = self.root / "data"
        self.port = free_port()

    def url(self, database: str = "postgres") -> str:
        return f"postgres://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def create(self) -> None:
        _give_to_service_account(self.root)
        initdb = [*as_service_account(), str(PG_BIN / "initdb"), "--pgdata", str(self.data)]
        initdb += ["--username", PG_USER, "--auth", "trust", "--encoding", "UTF8", "--no-sync"]
        done = subprocess.run(initdb, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr[-2000:]}")

    def start(self) -> None:
        argv = [*as_service_account(), str(PG_BIN / "postgres"), "-D", str(self.data)]
        argv += ["-p", str(self.port), "-c", "listen_addresses=127.0.0.1"]
        argv += ["-c", "unix_socket_directories=", "-c", "max_connections=300"]
        # A clean shutdown checkpoints anyway, and this cluster is thrown away: skipping fsync
        # spares the shared disk without changing what the gateway sees.
        argv += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
        self.procs.start(self.name, argv)
        self.procs.wait_until(self.name, self.accepts_connections, "connection")

    def accepts_connections(self) -> bool:
        try:
            with psycopg.connect(self.url(), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def logged_errors(self) -> Counter[str]:
        """ERROR lines of the server's log so far, by message (a deadlock shows up here)."""
        path = self.procs.log_path(self.name)
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return Counter(line.split("ERROR:", 1)[1].strip() for line in lines if " ERROR: " in line)

    def stop(self) -> None:
        """A fast shutdown: open sessions are cut, as when a database server restarts."""
        pids = self.procs.pids(self.name)
        if pids:
            os.kill(pids[0], signal.SIGINT)
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
        self.procs.start(self.name, argv)
        self.procs.wait_until(self.name, self.answers, "PONG")

    def answers(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        self.procs.stop(self.name)
