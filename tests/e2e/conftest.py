"""The end-to-end tier: the harness's stack (a real web server and worker) and fake upstream,
started once for tests/e2e. It runs on the test database pytest-django creates, with data
committed (no per-test transaction) so the processes see it, the configured broker (or the
embedded one in a fresh var dir) and a queue of its own.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import dj_database_url
import httpx
import pytest
from django.conf import settings

from harness.procs import Procs
from harness.stack import Stack, StackConfig
from harness.upstream import FakeUpstream

COMPLETIONS_PATH = "/v1/async/completions"
JOB_TIMEOUT = 60.0  # seconds; the machine has two cores and other work on it
PROCESSES = ("web", "worker-0")


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
                left = f"{len(job_ids) - done} of {len(job_ids)} jobs"
                raise AssertionError(f"{left} not finished after {timeout:g} s")
            time.sleep(0.25)


def _database_url(db: dict[str, Any]) -> str:
    """The URL of the database Django is connected to now (the test database)."""
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    return urlsplit(settings.DATABASE_URL)._replace(path=f"/{quote(db['NAME'], safe='')}").geturl()


@pytest.fixture(scope="package")
def e2e_db(django_db_setup: None, django_db_blocker: Any) -> Iterator[Database]:
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    # pytest-django creates the test database only when a collected test asks for `db`; run
    # alone, this tier must create it itself (and never let the children use the real one).
    original = dj_database_url.parse(settings.DATABASE_URL)["NAME"]
    own_setup = None
    with django_db_blocker.unblock():
        if connection.settings_dict["NAME"] == original:
            own_setup = setup_databases(verbosity=0, interactive=False, aliases={"default"})
        assert connection.settings_dict["NAME"] != original
    database = Database(django_db_blocker)
    yield database
    with django_db_blocker.unblock():
        from gateway.access.models import VirtualKey
        from jobs.models import AsyncJob

        # Unit tests later in the session expect an empty database.
        AsyncJob.objects.filter(virtual_key_id__in=database.key_ids).delete()
        VirtualKey.objects.filter(pk__in=database.key_ids).delete()
        if own_setup is not None:
            connection.close()
            teardown_databases(own_setup, verbosity=0)


# --- processes ---------------------------------------------------------------------------------
@dataclass
class Gateway:
    stack: Stack

    @property
    def base_url(self) -> str:
        return self.stack.web_url

    def logs(self) -> dict[str, str]:
        procs = self.stack.procs
        return {name: procs.log_path(name).read_text(errors="replace") for name in PROCESSES}

    def check_alive(self, *, with_tail: bool = True) -> None:
        try:
            self.stack.procs.check_alive(*PROCESSES)
        except RuntimeError as exc:
            message = str(exc) if with_tail else str(exc).split(":\n", 1)[0]
            pytest.fail(f"{message} (while the tests ran)", pytrace=False)


@pytest.fixture(scope="package")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture(scope="package")
def gateway(
    e2e_db: Database, upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    from django.db import connection

    root = tmp_path_factory.mktemp("e2e")
    config = StackConfig(
        _database_url(connection.settings_dict),
        root / "var",
        f"e2e-{uuid.uuid4().hex}",
        broker_url=os.environ.get("CELERY_BROKER_URL", ""),
        upstream_url=upstream.base_url,
        # Keys are stored as an HMAC peppered with SECRET_KEY: the processes must share ours.
        secret_key=settings.SECRET_KEY,
        web_threads=8,
        worker_log_level="INFO",
        settings={
            "GATEWAY_RETRIES": "2",
            "GATEWAY_RETRY_BASE_DELAY": "0.05",
            "GATEWAY_RETRY_MAX_DELAY": "0.2",
        },
    )
    with Procs(root / "logs") as procs:
        stack = Stack(procs, config)
        try:
            stack.start_workers()
            stack.start_web()
            procs.wait_for_line("worker-0", r"@\S+ ready\.")
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
        running = Gateway(stack)
        e2e_db.check_alive = running.check_alive
        try:
            yield running
        finally:
            e2e_db.check_alive = lambda: None
            stack.stop_workers()
            stack.forget_queue()


# --- HTTP --------------------------------------------------------------------------------------
class GatewayClient:
    """Small client of the async API; keeps every response body for the secrets scan."""

    def __init__(self, base_url: str, check_alive: Callable[[], None]) -> None:
        self.check_alive = check_alive
        # A server may close an idle keep-alive connection at any time; dropping ours after 1 s
        # avoids sending a request down a connection the server is closing ("connection reset").
        limits = httpx.Limits(
            max_connections=64, max_keepalive_connections=64, keepalive_expiry=1.0
        )
        self.http = httpx.Client(base_url=base_url, timeout=30, limits=limits)
        self._lock = threading.Lock()
        self.bodies: list[str] = []

    def _seen(self, response: httpx.Response) -> httpx.Response:
        with self._lock:
            self.bodies += [response.text, json.dumps(dict(response.headers))]
        return response

    def submit(
        self,
        key: str,
        body: dict[str, Any],
        *,
        ttl: int | None = None,
        headers: dict[str, str] | None = None,
        path: str = COMPLETIONS_PATH,
    ) -> httpx.Response:
        """Submit ``body`` to the route at ``path`` (completions unless said otherwise)."""
        sent = {"Authorization": f"Bearer {key}"} if key else {}
        sent |= {"x-bf-async-job-result-ttl": str(ttl)} if ttl is not None else {}
        return self._seen(self.http.post(path, json=body, headers=sent | (headers or {})))

    def submit_ok(self, key: str, body: dict[str, Any], **kwargs: Any) -> str:
        """Submit, insist on 202, return the job id."""
        response = self.submit(key, body, **kwargs)
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def get(self, key: str, url: str) -> httpx.Response:
        return self._seen(self.http.get(url, headers={"Authorization": f"Bearer {key}"}))

    def poll(self, key: str, job_id: str, path: str = COMPLETIONS_PATH) -> httpx.Response:
        return self.get(key, f"{path}/{job_id}")

    def poll_until_done(
        self, key: str, job_id: str, timeout: float = JOB_TIMEOUT, path: str = COMPLETIONS_PATH
    ) -> httpx.Response:
        """Poll until the job is completed or failed (HTTP 200); fails on anything but 202."""
        deadline = time.monotonic() + timeout
        while (response := self.poll(key, job_id, path)).status_code == 202:
            self.check_alive()
            if time.monotonic() > deadline:
                status = response.json()["status"]
                raise AssertionError(f"job {job_id} still {status} after {timeout:g} s")
            time.sleep(0.1)
        assert response.status_code == 200, response.text
        return response

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
