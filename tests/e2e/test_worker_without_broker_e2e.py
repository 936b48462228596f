"""A worker started while the broker is down runs the jobs already waiting in the table.

This module runs a stack of its own: a web server and, per test, a worker with the pool under
test, all given a broker URL nobody listens on, and a database of their own (the tier's shared
worker would otherwise claim these jobs first). The broker is a Redis URL whatever broker the
rest of the tier uses: the embedded broker is a folder beside the embedded database, down only
when the disk is, and then the database is down too; a broker down while the database is up is
a broker server's outage.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.management.commands.rungateway import web_command
from tests.e2e.conftest import (
    BASE_DIR,
    JOB_TIMEOUT,
    WORKER_COMMAND,
    Child,
    _child_env,
    _database_url,
    _healthy,
    _spawn,
    _wait_for,
)
from tests.e2e.upstream import FakeUpstream, reply_text

pytestmark = pytest.mark.e2e

ENGINE_STARTED = re.compile(r"job engine (\S+) started")


def closed_port() -> int:
    """A local port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Outage:
    env: dict[str, str]
    log_dir: Path
    web: Child
    http: httpx.Client
    key: str

    def submit(self, prompt: str) -> str:
        response = self.http.post(
            "/v1/async/completions",
            json={"model": "openai/ok", "prompt": prompt, "max_tokens": 5},
            headers={"Authorization": f"Bearer {self.key}"},
        )
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def poll(self, job_id: str) -> httpx.Response:
        return self.http.get(
            f"/v1/async/completions/{job_id}", headers={"Authorization": f"Bearer {self.key}"}
        )


@pytest.fixture(scope="module")
def own_database(django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of an empty database for this module's stack (migrated by the caller)."""
    from django.db import connection

    if connection.vendor == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('broker-down-db') / 'gateway.sqlite3'}"
        return
    name = f"{connection.settings_dict['NAME']}_broker_down"
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    yield _database_url({**connection.settings_dict, "NAME": name})
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def outage(
    own_database: str, upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Outage]:
    root = tmp_path_factory.mktemp("broker-down")
    var_dir, log_dir = root / "var", root / "logs"
    var_dir.mkdir()
    log_dir.mkdir()
    env = _child_env(
        database_url=own_database,
        var_dir=var_dir,
        queue=f"broker-down-{uuid.uuid4().hex}",
        upstream=upstream.base_url,
    )
    env["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{closed_port()}/0"
    manage = [sys.executable, str(BASE_DIR / "manage.py")]
    subprocess.run([*manage, "migrate", "--verbosity", "0"], env=env, cwd=var_dir, check=True)
    key = subprocess.run(
        [*manage, "create_virtual_key", "--name", "broker-down"],
        env=env,
        cwd=var_dir,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    port = closed_port()
    web = _spawn(
        "web",
        web_command(sys.executable, host="127.0.0.1", port=port, workers=1, threads=4),
        env,
        log_dir,
    )
    base_url = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=base_url, timeout=30)
    try:
        _wait_for(web, "200 from /health", lambda: _healthy(base_url))
        yield Outage(env, log_dir, web, http, key)
    finally:
        http.close()
        web.stop()


def engines_started(child: Child) -> int:
    return len(set(ENGINE_STARTED.findall(child.text())))


def wait_until_done(outage: Outage, worker: Child, job_ids: list[str]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        answers = [outage.poll(job_id) for job_id in job_ids]
        if all(answer.status_code == 200 for answer in answers):
            return [answer.json() for answer in answers]
        worker.fail_if_dead("before its jobs were done")
        outage.web.fail_if_dead("while the jobs ran")
        if time.monotonic() > deadline:
            pending = sum(answer.status_code == 202 for answer in answers)
            pytest.fail(f"{pending} jobs not done after {JOB_TIMEOUT:g} s; log {worker.log}")
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("pool", "engines"),
    [
        ({}, 1),  # the default: threads
        ({"CELERY_WORKER_POOL": "solo"}, 1),
        ({"CELERY_WORKER_POOL": "prefork", "CELERY_WORKER_CONCURRENCY": "2"}, 2),
    ],
    ids=["threads", "solo", "prefork"],
)
def test_a_worker_started_while_the_broker_is_down_runs_the_jobs_already_pending(
    outage: Outage, upstream: FakeUpstream, pool: dict[str, str], engines: int
) -> None:
    prompts = [f"broker down {uuid.uuid4().hex}" for _ in range(6)]
    job_ids = [outage.submit(prompt) for prompt in prompts]  # their bells are lost
    assert {outage.poll(job_id).json()["status"] for job_id in job_ids} == {"pending"}

    name = f"worker-{pool.get('CELERY_WORKER_POOL', 'threads')}"
    hostname = ["--hostname", f"{name}-{uuid.uuid4().hex[:8]}@%h"]
    command = [sys.executable, *WORKER_COMMAND, *hostname]
    worker = _spawn(name, command, {**outage.env, **pool}, outage.log_dir)
    try:
        done = wait_until_done(outage, worker, job_ids)
        # The jobs may be done before the rest of the worker has said so much.
        _wait_for(worker, f"{engines} engines", lambda: engines_started(worker) >= engines)
        _wait_for(worker, "refused broker", lambda: "Cannot connect to redis://" in worker.text())
    finally:
        worker.stop()

    for job, prompt in zip(done, prompts, strict=True):
        assert job["status"] == "completed", job
        assert [choice["text"] for choice in job["result"]["choices"]] == [reply_text(prompt)]
        assert len(upstream.calls(prompt=prompt)) == 1
    assert engines_started(worker) == engines
    assert re.search(r"@\S+ ready\.", worker.text()) is None, "the worker reached a broker"


def test_the_web_process_starts_no_engine(outage: Outage) -> None:
    outage.submit(f"web only {uuid.uuid4().hex}")

    assert outage.web.text()  # the web server logs: its silence below is not an empty log
    assert engines_started(outage.web) == 0
