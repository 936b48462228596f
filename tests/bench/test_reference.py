"""The bare ASGI reference: routing and JSON with a fake backend, then for real under uvicorn."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import quote
from urllib.request import Request, urlopen

import psycopg
import pytest
import redis

from bench import reference
from bench.reference import REDIS_LIST, TABLE, JobRow, ReferenceApp
from harness.procs import Procs, free_port

LOCAL_DATABASE_URL = "postgres://root@127.0.0.1:5432/postgres"
# A database of its own on the Redis the tests use, away from Celery's queues.
REDIS_URL = os.environ.get("BENCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


class FakeBackend:
    """Records what the handlers asked of Postgres and Redis."""

    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, JobRow] = {}
        self.published: list[bytes] = []
        self.closed = False

    async def insert_job(self, job_id: uuid.UUID, body: Any) -> None:
        self.rows[job_id] = (job_id, body, datetime(2026, 11, 26, 12, 0, tzinfo=UTC))

    async def get_job(self, job_id: uuid.UUID) -> JobRow | None:
        return self.rows.get(job_id)

    async def publish(self, message: bytes) -> None:
        self.published.append(message)

    async def close(self) -> None:
        self.closed = True


def app_with(backend: FakeBackend) -> ReferenceApp:
    async def open_backend() -> FakeBackend:
        return backend

    app = ReferenceApp(open_backend)
    app.backend = backend
    return app


def call(
    app: ReferenceApp, method: str, path: str, chunks: tuple[bytes, ...] = (b"",)
) -> tuple[int, dict[str, str], Any]:
    """Drives one HTTP request through the ASGI app: (status, headers, JSON body)."""
    incoming = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    scope = {"type": "http", "method": method, "path": path}
    asyncio.run(app(scope, receive, send))
    start, body = sent
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    assert int(headers["content-length"]) == len(body["body"])
    return start["status"], headers, json.loads(body["body"])


# --- routing and JSON, with a fake backend ------------------------------------------------------
def test_post_stores_the_body_publishes_the_id_and_answers_202() -> None:
    backend = FakeBackend()
    status, headers, body = call(app_with(backend), "POST", "/ref/jobs", (b'{"prompt": "hi"}',))

    assert status == 202
    assert headers["content-type"] == "application/json"
    assert body["status"] == "pending"
    job_id = uuid.UUID(body["id"])
    assert backend.rows[job_id][1] == {"prompt": "hi"}
    assert [json.loads(m) for m in backend.published] == [{"id": str(job_id)}]


def test_post_reads_a_body_sent_in_chunks() -> None:
    backend = FakeBackend()
    status, _, _ = call(app_with(backend), "POST", "/ref/jobs", (b'{"a"', b": 1", b"}"))
    assert status == 202
    assert [row[1] for row in backend.rows.values()] == [{"a": 1}]


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b""])
def test_post_with_a_bad_body_is_a_400_and_stores_nothing(raw: bytes) -> None:
    backend = FakeBackend()
    status, _, body = call(app_with(backend), "POST", "/ref/jobs", (raw,))
    assert status == 400
    assert body["error"]
    assert (backend.rows, backend.published) == ({}, [])


def test_post_with_a_body_over_the_limit_is_a_400() -> None:
    backend = FakeBackend()
    too_big = b'{"p": "' + b"x" * reference.MAX_BODY + b'"}'
    status, _, _ = call(app_with(backend), "POST", "/ref/jobs", (too_big,))
    assert status == 400
    assert backend.rows == {}


def test_get_returns_the_stored_job() -> None:
    backend = FakeBackend()
    app = app_with(backend)
    _, _, created = call(app, "POST", "/ref/jobs", (b'{"n": 1}',))

    status, _, body = call(app, "GET", f"/ref/jobs/{created['id']}")

    assert status == 200
    assert body == {
        "id": created["id"],
        "body": {"n": 1},
        "created_at": "2026-11-26T12:00:00+00:00",
    }


@pytest.mark.parametrize("tail", [str(uuid.uuid4()), "not-a-uuid", ""])
def test_get_of_an_unknown_or_malformed_id_is_a_404(tail: str) -> None:
    status, _, body = call(app_with(FakeBackend()), "GET", f"/ref/jobs/{tail}")
    assert status == 404
    assert body["error"]


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/ref/jobs", 405),
        ("DELETE", f"/ref/jobs/{uuid.uuid4()}", 405),
        ("GET", "/elsewhere", 404),
        ("GET", "/health", 200),
    ],
)
def test_routing(method: str, path: str, expected: int) -> None:
    status, _, _ = call(app_with(FakeBackend()), method, path)
    assert status == expected


def run_lifespan(app: ReferenceApp, *events: str) -> list[str]:
    """Sends lifespan events; returns the types of the app's answers."""
    incoming = [{"type": f"lifespan.{event}"} for event in events]
    answers: list[str] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: Any) -> None:
        answers.append(message["type"])

    asyncio.run(app({"type": "lifespan"}, receive, send))
    return answers


def test_lifespan_opens_the_backend_on_startup_and_closes_it_on_shutdown() -> None:
    backend = FakeBackend()
    app = app_with(backend)
    app.backend = None

    answers = run_lifespan(app, "startup", "shutdown")

    assert answers == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert backend.closed
    assert app.backend is None


def test_lifespan_reports_a_backend_that_cannot_open() -> None:
    async def broken() -> FakeBackend:
        raise OSError("connection refused")

    assert run_lifespan(ReferenceApp(broken), "startup") == ["lifespan.startup.failed"]


# --- for real: uvicorn, Postgres and Redis ------------------------------------------------------
def database_url() -> str:
    """CI's Postgres when DATABASE_URL names one, else this machine's."""
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith("postgres") else LOCAL_DATABASE_URL


@pytest.fixture
def schema_url() -> Iterator[str]:
    """The database URL with a throwaway schema first on the search path.

    The reference table then lives in that schema, apart from any benchmark run's table.
    """
    base = database_url()
    schema = f"bench_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, Any]:
    request = Request(url, data=body, method=method)
    try:
        with urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except HTTPError as exc:
        return exc.code, json.loads(exc.read())


def count_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()  # noqa: S608
    return int(row[0]) if row else -1


def test_serves_post_and_get_under_uvicorn_with_postgres_and_redis(
    tmp_path: Path, schema_url: str
) -> None:
    port = free_port()
    # One worker keeps the test quick; uvicorn imports the app by name and the URLs come from
    # the environment either way, as with more workers.
    argv = [sys.executable, "-m", "bench.reference", "--port", str(port), "--workers", "1"]
    argv += ["--database-url", schema_url, "--redis-url", REDIS_URL]
    base = f"http://127.0.0.1:{port}"
    broker = redis.Redis.from_url(REDIS_URL)
    reference.prepare(schema_url, REDIS_URL)
    try:
        with Procs(tmp_path) as procs:
            procs.start("reference", argv)
            procs.wait_http("reference", f"{base}/health", timeout=30)

            status, created = http("POST", f"{base}/ref/jobs", b'{"prompt": "hello"}')
            assert (status, created["status"]) == (202, "pending")
            status, job = http("GET", f"{base}/ref/jobs/{created['id']}")
            assert (status, job["id"], job["body"]) == (200, created["id"], {"prompt": "hello"})
            assert datetime.fromisoformat(job["created_at"]).tzinfo is not None
            assert http("GET", f"{base}/ref/jobs/{uuid.uuid4()}")[0] == 404

        message = json.dumps({"id": created["id"]}).encode()
        assert message in broker.lrange(REDIS_LIST, 0, -1)
        assert count_rows(schema_url) == 1

        reference.prepare(schema_url, REDIS_URL)  # before the next run

        assert count_rows(schema_url) == 0
        assert broker.exists(REDIS_LIST) == 0
    finally:
        broker.close()


def test_prepare_creates_the_table_once(schema_url: str) -> None:
    reference.prepare(schema_url, REDIS_URL)
    reference.prepare(schema_url, REDIS_URL)  # already there: emptied, not made again
    assert count_rows(schema_url) == 0
