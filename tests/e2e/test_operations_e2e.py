"""Operations through a real web server and worker: /metrics, JSON logs, /ready, Retry-After.

A stack of its own, with ``LOG_FORMAT=json``, a metrics token and a JWT secret, so its logs can
be parsed line by line, and a database of its own (on the configured server, or SQLite), so its
metrics count its jobs alone and no other stack's worker keeps it ready once its own stops.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from django.conf import settings
from django.test import override_settings

from harness.procs import Procs
from harness.stack import Stack, StackConfig, ensure_database
from harness.upstream import FakeUpstream
from tests.e2e.conftest import COMPLETIONS_PATH, JOB_TIMEOUT, Database, _database_url

METRICS_TOKEN = "scraper-token-0123456789abcdef"
JWT_SECRET = "operations-e2e-jwt-secret-0123456789abcdef"
MODEL = "openai/gpt-3.5-turbo-instruct"


KEY_NAME = "ops-metrics-key"


def _own_database(root: Path) -> str:
    """Beside the test database: another database on its server, or a SQLite file."""
    from django.db import connection

    url = _database_url(connection.settings_dict)
    if url.startswith("sqlite"):
        return f"sqlite:///{root / 'ops.sqlite3'}"
    server, _, name = url.rpartition("/")
    return f"{server}/{name}_ops"


def _drop(database_url: str) -> None:
    if database_url.startswith("postgres"):
        server, _, name = database_url.rpartition("/")
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def ops(
    e2e_db: Database, upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("ops")
    database_url = _own_database(root)
    if database_url.startswith("postgres"):
        _drop(database_url)
        ensure_database(database_url)
    config = StackConfig(
        database_url=database_url,
        var_dir=root / "var",
        queue=f"ops-{uuid.uuid4().hex}",
        broker_url=os.environ.get("CELERY_BROKER_URL", ""),
        upstream_url=upstream.base_url,
        secret_key=settings.SECRET_KEY,
        web_threads=4,
        worker_log_level="INFO",
        settings={
            "LOG_FORMAT": "json",
            "GATEWAY_METRICS_TOKEN": METRICS_TOKEN,
            "GATEWAY_JWT_SECRET": JWT_SECRET,
            "GATEWAY_RETRIES": "0",
        },
    )
    with Procs(root / "logs") as procs:
        stack = Stack(procs, config)
        try:
            stack.prepare(KEY_NAME)
            stack.start_workers()
            stack.start_web()
            procs.wait_for_line("worker-0", r"@\S+ ready\.")
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
        try:
            yield stack
        finally:
            stack.stop_workers()
            stack.forget_queue()
            procs.stop_all()
            _drop(database_url)


@pytest.fixture(scope="module")
def http(ops: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ops.web_url, timeout=30) as client:
        yield client


def _wait_done(http: httpx.Client, auth: dict[str, str], job_id: str) -> httpx.Response:
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        response = http.get(f"{COMPLETIONS_PATH}/{job_id}", headers=auth)
        if response.status_code != 202:
            return response
        assert time.monotonic() < deadline, f"job {job_id} not finished"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def finished(ops: Stack, http: httpx.Client) -> dict[str, Any]:
    """Two jobs run to the end by the worker: one completed, one failed upstream."""
    key = ops.key
    auth = {"Authorization": f"Bearer {key}"}
    request_id = "ops-e2e-request.1"
    sent = {"model": MODEL, "prompt": "Say hi", "max_tokens": 3}
    submitted = http.post(COMPLETIONS_PATH, json=sent, headers={**auth, "X-Request-ID": request_id})
    assert submitted.status_code == 202, submitted.text
    assert submitted.headers["X-Request-ID"] == request_id
    done_id = submitted.json()["id"]
    failing = {"model": "openai/bad-400", "prompt": "Say hi", "max_tokens": 3}
    failed_id = http.post(COMPLETIONS_PATH, json=failing, headers=auth).json()["id"]
    first_poll = http.get(f"{COMPLETIONS_PATH}/{done_id}", headers=auth)
    last_poll = _wait_done(http, auth, done_id)
    assert _wait_done(http, auth, failed_id).json()["status"] == "failed"
    missing = http.get(f"{COMPLETIONS_PATH}/{uuid.uuid4()}", headers=auth)
    return {
        "key": key,
        "request_id": request_id,
        "done_id": done_id,
        "failed_id": failed_id,
        "first_poll": first_poll,
        "last_poll": last_poll,
        "missing": missing,
    }


def _metrics(http: httpx.Client) -> str:
    response = http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return response.text


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of the one sample ``name`` with (at least) these labels."""
    for line in text.splitlines():
        if not line.startswith((name + "{", name + " ")):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.partition("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} sample with {labels} in:\n{text}")


def _json_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_metrics_name_the_jobs_calls_tokens_and_answers_of_the_web_and_the_worker(
    http: httpx.Client, finished: dict[str, Any]
) -> None:
    text = _metrics(http)
    model = MODEL.split("/", 1)[1]
    completed = {"status": "completed", "provider": "openai", "model": model}
    assert _sample(text, "gateway_jobs_finished_total", **completed) == 1
    failed = {"status": "failed", "provider": "openai", "model": "bad-400"}
    assert _sample(text, "gateway_jobs_finished_total", **failed) == 1
    ok_calls = {"provider": "openai", "model": model, "outcome": "ok"}
    assert _sample(text, "gateway_upstream_call_seconds_count", **ok_calls) == 1
    bad_calls = {"provider": "openai", "model": "bad-400", "outcome": "permanent_error"}
    assert _sample(text, "gateway_upstream_call_seconds_count", **bad_calls) == 1
    tokens = {"key": KEY_NAME, "model": model, "direction": "completion"}
    assert _sample(text, "gateway_tokens_total", **tokens) >= 1
    submits = {"operation": "submit", "request_type": "text_completion", "status_code": "202"}
    assert _sample(text, "gateway_api_requests_total", **submits) == 2
    polls = {"operation": "poll", "request_type": "text_completion", "status_code": "200"}
    assert _sample(text, "gateway_api_requests_total", **polls) >= 2
    not_found = {"operation": "poll", "request_type": "text_completion", "status_code": "404"}
    assert _sample(text, "gateway_api_requests_total", **not_found) == 1
    assert _sample(text, "gateway_jobs_pending") == 0
    assert _sample(text, "gateway_oldest_pending_job_age_seconds") == 0
    assert "gateway_worker_calls_in_flight{" in text
    assert finished["key"] not in text


def test_metrics_are_readable_with_an_admin_jwt_or_the_token_and_by_no_one_else(
    http: httpx.Client, finished: dict[str, Any]
) -> None:
    from gateway.access.tokens import ROLE_ADMIN, issue_token

    with override_settings(GATEWAY_JWT_SECRET=JWT_SECRET):
        admin = issue_token(role=ROLE_ADMIN)
    assert http.get("/metrics", headers={"Authorization": f"Bearer {admin}"}).status_code == 200
    assert http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).is_success
    refused = [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {METRICS_TOKEN}x"},
        {"Authorization": f"Bearer {finished['key']}"},  # a virtual key is no reader
    ]
    for headers in refused:
        response = http.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["type"] == "authentication_error"
        assert "gateway_" not in response.text


def test_a_202_poll_says_when_to_poll_again(finished: dict[str, Any]) -> None:
    first = finished["first_poll"]
    if first.status_code == 202:  # the job may already have finished on a fast worker
        assert int(first.headers["Retry-After"]) >= 1
    assert finished["last_poll"].status_code == 200
    assert "Retry-After" not in finished["last_poll"].headers


def test_log_lines_are_json_with_the_request_id_the_event_id_and_the_job_id(
    ops: Stack, finished: dict[str, Any]
) -> None:
    web = _json_lines(ops.procs.log_path("web"))
    worker = _json_lines(ops.procs.log_path("worker-0"))
    assert web and worker
    missing = finished["missing"]
    assert missing.status_code == 404
    event_id = missing.json()["event_id"]
    errors = [line for line in web if line.get("event_id") == event_id]
    assert len(errors) == 1
    assert errors[0]["request_id"] == missing.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", errors[0]["request_id"])  # none sent: one was made
    by_job = {line.get("job_id"): line for line in worker if line["event"] == "job finished"}
    done = by_job[finished["done_id"]]
    assert done["status"] == "completed"
    assert done["request_type"] == "text_completion"
    assert (done["provider"], done["model"]) == ("openai", MODEL.split("/", 1)[1])
    assert done["tries"] == 1
    assert done["queue_wait_s"] >= 0 and done["run_time_s"] > 0
    assert done["completion_tokens"] >= 1
    assert by_job[finished["failed_id"]]["status"] == "failed"
    # Bells were rung and run, and said nothing: only what happened to the jobs is told.
    assert not [line for line in worker if line["logger"].startswith("celery.app.trace")]
    assert not [line for line in worker if line["logger"] == "celery.worker.strategy"]
    all_text = ops.procs.log_path("web").read_text() + ops.procs.log_path("worker-0").read_text()
    assert finished["key"] not in all_text


def test_ready_while_the_worker_runs_and_503_naming_it_once_stopped(
    ops: Stack, http: httpx.Client, finished: dict[str, Any]
) -> None:
    assert http.get("/health").status_code == 200
    ready = http.get("/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ok", "database": "ok", "broker": "ok", "worker": "ok"}
    ops.stop_workers()
    stopped = http.get("/ready")
    assert stopped.status_code == 503
    assert stopped.json()["worker"] == "no heartbeat"
    assert stopped.json()["database"] == "ok"
    assert http.get("/health").status_code == 200  # liveness is the web process's own
