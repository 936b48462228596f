"""The end-to-end harness: a real web server, a real Celery worker and a fake upstream.

The test database is the one pytest-django creates, with data committed (no per-test
transaction), because the web and worker processes must see it. The children get their whole
configuration from an explicit environment: the test database, the configured broker (or the
embedded filesystem broker in a fresh var dir), a queue of their own and the fake upstream.
Everything is package-scoped: started once for tests/e2e, stopped and cleaned up after it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dj_database_url
import httpx
import pytest
from django.conf import settings

from bench.procs import free_port
from gateway.management.commands.rungateway import web_command
from providers import registry
from tests.e2e.upstream import UPSTREAM_ANTHROPIC_KEY, UPSTREAM_OPENAI_KEY, FakeUpstream

# Seconds. The machine has two cores and other work on it: generous, but bounded.
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 45.0  # the worker drains jobs in flight for up to 30 s on SIGTERM
JOB_TIMEOUT = 60.0

BASE_DIR = Path(settings.BASE_DIR)

# The production commands, as rungateway starts them.
WORKER_COMMAND = shlex.split("-m celery -A gateway worker --loglevel INFO")


# --- database ----------------------------------------------------------------------------------
@dataclass
class Database:
    """Access to the committed test database from the test process."""

    blocker: Any  # pytest-django's DjangoDbBlocker
    raw_keys: list[str] = field(default_factory=list)
    key_ids: list[int] = field(default_factory=list)
    # Raises once a gateway process has died, so waits fail at once instead of timing out.
    check_alive: Callable[[], None] = lambda: None

    def access(self) -> AbstractContextManager[None]:
        return self.blocker.unblock()  # type: ignore[no-any-return]

    def create_key(self, **kwargs: Any) -> str:
        """A new virtual key, committed; returns the raw key."""
        from tests.factories import VirtualKeyFactory

        with self.access():
            key = VirtualKeyFactory(**kwargs)
        self.raw_keys.append(key.raw)
        self.key_ids.append(key.pk)
        return str(key.raw)

    def wait_for_jobs(self, job_ids: list[str], timeout: float = JOB_TIMEOUT) -> None:
        """Until every job is completed or failed; cheaper than polling hundreds over HTTP."""
        from jobs.models import TERMINAL_STATUSES, AsyncJob

        deadline = time.monotonic() + timeout
        while True:
            with self.access():
                done = AsyncJob.objects.filter(pk__in=job_ids, status__in=TERMINAL_STATUSES).count()
            if done == len(job_ids):
                return
            self.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(job_ids) - done} of {len(job_ids)} jobs not finished after {timeout:g} s"
                )
            time.sleep(0.25)


def _original_database_name() -> str:
    return str(dj_database_url.parse(settings.DATABASE_URL)["NAME"])


def _database_url(db: dict[str, Any]) -> str:
    """The URL of the database Django is connected to now (the test database)."""
    engine = db["ENGINE"].rsplit(".", 1)[-1]
    if engine == "sqlite3":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    if engine == "postgresql":
        auth = quote(db.get("USER") or "", safe="")
        if db.get("PASSWORD"):
            auth += ":" + quote(db["PASSWORD"], safe="")
        host = f"{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}"
        return f"postgres://{auth}@{host}/{quote(db['NAME'], safe='')}"
    raise RuntimeError(f"the e2e tier does not know how to hand {engine} to child processes")


@pytest.fixture(scope="package")
def e2e_db(django_db_setup: None, django_db_blocker: Any) -> Iterator[Database]:
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    # pytest-django creates the test database only when a collected test asks for `db`; run
    # alone, this tier must create it itself (and never let the children use the real one).
    own_setup = None
    with django_db_blocker.unblock():
        if connection.settings_dict["NAME"] == _original_database_name():
            own_setup = setup_databases(verbosity=0, interactive=False, aliases={"default"})
        assert connection.settings_dict["NAME"] != _original_database_name()
    database = Database(django_db_blocker)
    yield database
    with django_db_blocker.unblock():
        from gateway.models import VirtualKey
        from jobs.models import AsyncJob

        # Unit tests later in the session expect an empty database.
        AsyncJob.objects.filter(virtual_key_id__in=database.key_ids).delete()
        VirtualKey.objects.filter(pk__in=database.key_ids).delete()
        if own_setup is not None:
            connection.close()
            teardown_databases(own_setup, verbosity=0)


# --- processes ---------------------------------------------------------------------------------
@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def fail_if_dead(self, when: str, *, with_tail: bool = True) -> None:
        if self.process.poll() is not None:
            tail = f":\n{self.tail()}" if with_tail else ""
            pytest.fail(
                f"{self.name} exited with {self.process.returncode} {when}; log {self.log}{tail}",
                pytrace=False,
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_TIMEOUT)
        # The child leads its own process group (the web server's workers are in it too).
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@dataclass
class Gateway:
    base_url: str
    web: Child
    worker: Child
    queue: str

    def logs(self) -> dict[str, str]:
        return {child.name: child.text() for child in (self.web, self.worker)}

    def check_alive(self, *, with_tail: bool = True) -> None:
        for child in (self.web, self.worker):
            child.fail_if_dead("while the tests ran", with_tail=with_tail)


def _child_env(*, database_url: str, var_dir: Path, queue: str, upstream: str) -> dict[str, str]:
    provider_vars = {
        f"{name.upper()}_{suffix}"
        for name in registry.ENV_PROVIDERS
        for suffix in ("API_KEY", "BASE_URL")
    }
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in provider_vars
        and not name.startswith(("GATEWAY_", "CELERY_", "DJANGO_"))
        and name not in {"DATABASE_URL", "SECRET_KEY", "ALLOWED_HOSTS"}
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "gateway.settings",
            # Keys are stored as an HMAC peppered with SECRET_KEY: the children must share ours.
            "SECRET_KEY": settings.SECRET_KEY,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": database_url,
            "GATEWAY_VAR_DIR": str(var_dir),
            "GATEWAY_QUEUE": queue,
            "OPENAI_BASE_URL": f"{upstream}/v1",
            "OPENAI_API_KEY": UPSTREAM_OPENAI_KEY,
            "ANTHROPIC_BASE_URL": upstream,
            "ANTHROPIC_API_KEY": UPSTREAM_ANTHROPIC_KEY,
            "GATEWAY_RETRIES": "2",
            "GATEWAY_RETRY_BASE_DELAY": "0.05",
            "GATEWAY_RETRY_MAX_DELAY": "0.2",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            # The children run in the var dir (see _spawn), so the project comes from the path.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(BASE_DIR), env.get("PYTHONPATH")])),
        }
    )
    broker = os.environ.get("CELERY_BROKER_URL")
    if broker:  # else the embedded filesystem broker under GATEWAY_VAR_DIR
        env["CELERY_BROKER_URL"] = broker
    return env


def _spawn(name: str, command: list[str], env: dict[str, str], log_dir: Path) -> Child:
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            # Not the checkout: kombu's filesystem transport writes its exchange tables to
            # ./control, relative to the working directory.
            cwd=env["GATEWAY_VAR_DIR"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Child(name, process, log)


def _wait_for(child: Child, what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not check():
        child.fail_if_dead("at start")
        if time.monotonic() > deadline:
            pytest.fail(
                f"{child.name}: no {what} after {STARTUP_TIMEOUT:g} s; log {child.log}:\n"
                f"{child.tail()}",
                pytrace=False,
            )
        time.sleep(0.2)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _forget_redis_queue(broker: str, queue: str) -> None:
    """Leftover messages of this run must not pile up in a shared Redis."""
    import redis

    client = redis.Redis.from_url(broker)
    try:
        for name in client.scan_iter(match=f"*{queue}*"):
            client.delete(name)
    finally:
        client.close()


@pytest.fixture(scope="package")
def upstream() -> Iterator[FakeUpstream]:
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="package")
def gateway(
    e2e_db: Database, upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    from django.db import connection

    root = tmp_path_factory.mktemp("e2e")
    var_dir, log_dir = root / "var", root / "logs"
    var_dir.mkdir()
    log_dir.mkdir()
    queue = f"e2e-{uuid.uuid4().hex}"
    env = _child_env(
        database_url=_database_url(connection.settings_dict),
        var_dir=var_dir,
        queue=queue,
        upstream=upstream.base_url,
    )
    python = sys.executable
    children: list[Child] = []
    try:
        port = free_port()
        web_argv = web_command(python, host="127.0.0.1", port=port, workers=2, threads=8)
        web = _spawn("web", web_argv, env, log_dir)
        children.append(web)
        # A node name of its own: workers of other runs may share the Redis.
        worker_name = ["--hostname", f"{queue}@%h"]
        worker = _spawn("worker", [python, *WORKER_COMMAND, *worker_name], env, log_dir)
        children.append(worker)
        base_url = f"http://127.0.0.1:{port}"
        _wait_for(web, "200 from /health", lambda: _healthy(base_url))
        _wait_for(
            worker, "ready line", lambda: re.search(r"@\S+ ready\.", worker.text()) is not None
        )
        running = Gateway(base_url, web, worker, queue)
        e2e_db.check_alive = running.check_alive
        yield running
    finally:
        e2e_db.check_alive = lambda: None
        for child in children:
            child.stop()
        broker = env.get("CELERY_BROKER_URL", "")
        if broker.startswith("redis://"):
            _forget_redis_queue(broker, queue)


# --- HTTP --------------------------------------------------------------------------------------
class GatewayClient:
    """Small client of the async API; keeps every response body for the secrets scan."""

    def __init__(self, base_url: str, check_alive: Callable[[], None]) -> None:
        self.check_alive = check_alive
        # A server may close an idle keep-alive connection at any time; dropping ours after 1 s
        # avoids sending a request down a connection the server is closing ("connection reset").
        self.http = httpx.Client(
            base_url=base_url,
            timeout=30,
            limits=httpx.Limits(
                max_connections=64, max_keepalive_connections=64, keepalive_expiry=1.0
            ),
        )
        self._lock = threading.Lock()
        self.bodies: list[str] = []

    def _seen(self, response: httpx.Response) -> httpx.Response:
        with self._lock:
            self.bodies.append(response.text)
            self.bodies.append(json.dumps(dict(response.headers)))
        return response

    def submit(
        self,
        key: str,
        body: dict[str, Any],
        *,
        ttl: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = {"Authorization": f"Bearer {key}"} if key else {}
        if ttl is not None:
            sent["x-bf-async-job-result-ttl"] = str(ttl)
        sent.update(headers or {})
        return self._seen(self.http.post("/v1/async/completions", json=body, headers=sent))

    def submit_ok(self, key: str, body: dict[str, Any], **kwargs: Any) -> str:
        """Submit, insist on 202, return the job id."""
        response = self.submit(key, body, **kwargs)
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def get(self, key: str, url: str) -> httpx.Response:
        return self._seen(self.http.get(url, headers={"Authorization": f"Bearer {key}"}))

    def poll(self, key: str, job_id: str) -> httpx.Response:
        return self.get(key, f"/v1/async/completions/{job_id}")

    def poll_until_done(
        self, key: str, job_id: str, timeout: float = JOB_TIMEOUT
    ) -> httpx.Response:
        """Poll until the job is completed or failed (HTTP 200); fails on anything but 202."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.poll(key, job_id)
            if response.status_code != 202:
                assert response.status_code == 200, response.text
                return response
            self.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"job {job_id} still {response.json()['status']} after {timeout:g} s"
                )
            time.sleep(0.1)

    def close(self) -> None:
        self.http.close()


@pytest.fixture(autouse=True)
def _children_stay_up(request: pytest.FixtureRequest) -> Iterator[None]:
    """A web or worker process that died is the failure, whatever else broke; and once one
    has died, the tests after it fail at once instead of each waiting out its timeout."""
    gateway: Gateway | None = None
    if "gateway" in request.fixturenames:
        gateway = request.getfixturevalue("gateway")
        gateway.check_alive(with_tail=False)  # the test it died under showed the log
    yield
    if gateway is not None:
        gateway.check_alive()


@pytest.fixture(scope="package")
def api(gateway: Gateway) -> Iterator[GatewayClient]:
    client = GatewayClient(gateway.base_url, gateway.check_alive)
    yield client
    client.close()


@pytest.fixture
def make_key(e2e_db: Database) -> Callable[..., str]:
    return e2e_db.create_key
