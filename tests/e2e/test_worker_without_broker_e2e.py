"""A worker started while the broker is down runs the jobs already waiting in the table.

This module runs a stack of its own: a web server and, per test, a worker with the pool under
test, all given a broker URL nobody listens on, and a database of their own (the tier's shared
worker would otherwise claim these jobs first). The broker is a Redis URL whatever broker the
rest of the tier uses: the embedded broker is a folder beside the embedded database, down only
when the disk is, and then the database is down too; a broker down while the database is up is
a broker server's outage.
"""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.procs import Procs, free_port
from harness.stack import Stack, StackConfig
from harness.upstream import FakeUpstream, reply_text
from tests.e2e.conftest import JOB_TIMEOUT, _database_url

pytestmark = pytest.mark.e2e

ENGINE_STARTED = re.compile(r"job engine (\S+) started")


@dataclass
class Outage:
    stack: Stack
    http: httpx.Client

    def submit(self, prompt: str) -> str:
        response = self.http.post(
            "/v1/async/completions",
            json={"model": "openai/ok", "prompt": prompt, "max_tokens": 5},
            headers=self.stack.auth,
        )
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def poll(self, job_id: str) -> httpx.Response:
        return self.http.get(f"/v1/async/completions/{job_id}", headers=self.stack.auth)


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
    config = StackConfig(
        database_url=own_database,
        var_dir=root / "var",
        queue=f"broker-down-{uuid.uuid4().hex}",
        broker_url=f"redis://127.0.0.1:{free_port()}/0",  # nobody listens there
        upstream_url=upstream.base_url,
        web_processes=1,
        web_threads=4,
        worker_log_level="INFO",
    )
    with Procs(root / "logs") as procs:
        stack = Stack(procs, config)
        stack.prepare("broker-down")
        stack.start_web()
        with httpx.Client(base_url=stack.web_url, timeout=30) as http:
            yield Outage(stack, http)


def engines_started(log: Path) -> int:
    return len(set(ENGINE_STARTED.findall(log.read_text(errors="replace"))))


def wait_until_done(outage: Outage, worker: Procs, job_ids: list[str]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        answers = [outage.poll(job_id) for job_id in job_ids]
        if all(answer.status_code == 200 for answer in answers):
            return [answer.json() for answer in answers]
        worker.check_alive("worker-0")
        outage.stack.procs.check_alive("web")
        if time.monotonic() > deadline:
            pending = sum(answer.status_code == 202 for answer in answers)
            pytest.fail(f"{pending} jobs not done after {JOB_TIMEOUT:g} s")
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
    outage: Outage,
    upstream: FakeUpstream,
    pool: dict[str, str],
    engines: int,
    tmp_path: Path,
) -> None:
    prompts = [f"broker down {uuid.uuid4().hex}" for _ in range(6)]
    job_ids = [outage.submit(prompt) for prompt in prompts]  # their bells are lost

    assert {outage.poll(job_id).json()["status"] for job_id in job_ids} == {"pending"}
    config = dataclasses.replace(outage.stack.config, settings=pool)
    with Procs(tmp_path) as procs:
        stack = Stack(procs, config)
        stack.start_worker(0)
        log = procs.log_path("worker-0")
        try:
            done = wait_until_done(outage, procs, job_ids)
            # The jobs may be done before the rest of the worker has said so much.
            procs.wait_until("worker-0", lambda: engines_started(log) >= engines, "engines")
            refused = lambda: "Cannot connect to redis://" in log.read_text()  # noqa: E731
            procs.wait_until("worker-0", refused, "refused broker")
        finally:
            stack.stop_workers()

    for job, prompt in zip(done, prompts, strict=True):
        assert job["status"] == "completed", job
        assert [choice["text"] for choice in job["result"]["choices"]] == [reply_text(prompt)]
        assert len(upstream.calls(prompt=prompt)) == 1
    assert engines_started(log) == engines
    assert re.search(r"@\S+ ready\.", log.read_text()) is None, "the worker reached a broker"


def test_the_web_process_starts_no_engine(outage: Outage) -> None:
    outage.submit(f"web only {uuid.uuid4().hex}")

    web_log = outage.stack.procs.log_path("web")
    assert web_log.read_text()  # the web server logs: its silence below is not an empty log
    assert engines_started(web_log) == 0
