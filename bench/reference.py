"""The bare reference the gateway's submit and poll paths are compared with: a hand-written ASGI
application, no framework, doing the least work a durable async job API can do. ``POST /ref/jobs``
parses the JSON body, runs one INSERT and one Redis LPUSH and answers 202; ``GET /ref/jobs/<uuid>``
runs one SELECT. Whatever the gateway spends beyond this is the cost of its framework,
authentication and validation. The Redis list only grows while a benchmark runs (trimming it
would be a second command per request); ``prepare()`` empties it and the table before the next.
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime
from typing import Any

import psycopg
import redis
import redis.asyncio
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

DATABASE_URL_ENV = "BENCH_REFERENCE_DATABASE_URL"
REDIS_URL_ENV = "BENCH_REFERENCE_REDIS_URL"
REDIS_LIST = "bench:reference"
TABLE = "bench_reference_job"
JOBS_PATH = "/ref/jobs"
MAX_BODY = 1024 * 1024
INSERT_SQL = f"INSERT INTO {TABLE} (id, body) VALUES (%s, %s)"  # noqa: S608 - constant names
SELECT_SQL = f"SELECT id, body, created_at FROM {TABLE} WHERE id = %s"  # noqa: S608

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
JobRow = tuple[uuid.UUID, Any, datetime]


class PostgresRedisBackend:
    """One worker process's connection pool and Redis client, on the URLs ``main()`` put in the
    environment (uvicorn's workers import the app by name)."""

    def __init__(self) -> None:
        # Autocommit: each statement is its own transaction, one round trip per request.
        self.pool = AsyncConnectionPool(
            os.environ[DATABASE_URL_ENV],
            min_size=4,
            max_size=16,
            kwargs={"autocommit": True},
            open=False,
        )
        self.redis = redis.asyncio.Redis.from_url(os.environ[REDIS_URL_ENV])

    @classmethod
    async def open(cls) -> PostgresRedisBackend:
        backend = cls()
        await backend.pool.open(wait=True, timeout=30)
        return backend

    async def insert_job(self, job_id: uuid.UUID, body: Any) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(INSERT_SQL, (job_id, Jsonb(body)))

    async def get_job(self, job_id: uuid.UUID) -> JobRow | None:
        async with self.pool.connection() as conn:
            return await (await conn.execute(SELECT_SQL, (job_id,))).fetchone()

    async def publish(self, message: bytes) -> None:
        await self.redis.lpush(REDIS_LIST, message)

    async def close(self) -> None:
        await self.pool.close()
        await self.redis.aclose()


async def read_body(receive: Receive) -> bytes | None:
    """The request body, or None when the client went away or sent more than MAX_BODY."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if message["type"] == "http.disconnect" or len(body) > MAX_BODY:
            return None
        if not message.get("more_body", False):
            return body


class ReferenceApp:
    """Lifespan opens and closes the backend; HTTP goes to two handlers."""

    def __init__(self, open_backend: Callable[[], Awaitable[PostgresRedisBackend]]) -> None:
        self._open_backend = open_backend  # the tests' fake speaks the same four calls
        self.backend: PostgresRedisBackend | None = None

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] == "http":
            status, payload = await self.answer(scope["method"], scope["path"], receive)
            body = json.dumps(payload).encode()
            length = b"%d" % len(body)
            headers = [(b"content-type", b"application/json"), (b"content-length", length)]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while (await receive())["type"] == "lifespan.startup":
            try:
                self.backend = await self._open_backend()
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        if self.backend is not None:  # lifespan.shutdown
            await self.backend.close()
            self.backend = None
        await send({"type": "lifespan.shutdown.complete"})

    async def answer(self, method: str, path: str, receive: Receive) -> tuple[int, Any]:
        if path == "/health":
            return 200, {"status": "ok"}
        if path != JOBS_PATH and not path.startswith(JOBS_PATH + "/"):
            return 404, {"error": "Not found."}
        if (method, path == JOBS_PATH) not in (("POST", True), ("GET", False)):
            return 405, {"error": "Method not allowed."}
        if self.backend is None:
            raise RuntimeError("the backend opens on lifespan startup; run with lifespan on")
        if method == "GET":  # GET /ref/jobs/<uuid>: the stored job, or 404
            try:
                row = await self.backend.get_job(uuid.UUID(path[len(JOBS_PATH) + 1 :]))
            except ValueError:
                row = None
            if row is None:
                return 404, {"error": "No such job."}
            return 200, {"id": str(row[0]), "body": row[1], "created_at": row[2].isoformat()}
        # POST /ref/jobs: store the body, publish the id, answer 202.
        raw = await read_body(receive)
        if raw is None:
            return 400, {"error": "The body is missing or too large."}
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {"error": "The body is not valid JSON."}
        if not isinstance(body, dict):
            return 400, {"error": "The body must be a JSON object."}
        job_id = uuid.uuid4()
        await self.backend.insert_job(job_id, body)
        await self.backend.publish(json.dumps({"id": str(job_id)}).encode())
        return 202, {"id": str(job_id), "status": "pending"}


app = ReferenceApp(PostgresRedisBackend.open)


def prepare(database_url: str, redis_url: str) -> None:
    """An empty reference table (created when missing) and an empty Redis list."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id uuid PRIMARY KEY, body jsonb NOT NULL, "
            "created_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(f"TRUNCATE {TABLE}")
    with redis.Redis.from_url(redis_url) as client:
        client.delete(REDIS_LIST)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the benchmark's bare ASGI reference.")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database-url", default="postgres://root@127.0.0.1/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    import uvicorn

    os.environ[DATABASE_URL_ENV] = args.database_url
    os.environ[REDIS_URL_ENV] = args.redis_url
    uvicorn.run(
        "bench.reference:app",
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
