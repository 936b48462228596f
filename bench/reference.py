"""The bare reference the gateway's submit and poll paths are compared with.

A hand-written ASGI application, no framework, doing the least work a durable async job API can
do: ``POST /ref/jobs`` parses the JSON body, runs one INSERT and one Redis LPUSH and answers 202;
``GET /ref/jobs/<uuid>`` runs one SELECT. Whatever the gateway spends beyond this is the cost of
its framework, authentication and validation::

    python -m bench.reference --port 9200 --workers 2 \\
        --database-url postgres://root@127.0.0.1:5432/postgres --redis-url redis://127.0.0.1:6379/0

Each worker process opens a psycopg async pool and one redis.asyncio client on lifespan startup.
The Redis list only grows while a benchmark runs (trimming it would be a second command per
request); ``cleanup()`` deletes it afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime
from typing import Any, Protocol

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

CREATE_SQL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id uuid PRIMARY KEY,
    body jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""
INSERT_SQL = f"INSERT INTO {TABLE} (id, body) VALUES (%s, %s)"  # noqa: S608  constant name
SELECT_SQL = f"SELECT id, body, created_at FROM {TABLE} WHERE id = %s"  # noqa: S608

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
JobRow = tuple[uuid.UUID, Any, datetime]


class Backend(Protocol):
    """The storage and the broker the handlers talk to (Postgres and Redis in production)."""

    async def insert_job(self, job_id: uuid.UUID, body: Any) -> None: ...

    async def get_job(self, job_id: uuid.UUID) -> JobRow | None: ...

    async def publish(self, message: bytes) -> None: ...

    async def close(self) -> None: ...


class PostgresRedisBackend:
    """One worker process's connection pool and Redis client."""

    def __init__(self, database_url: str, redis_url: str) -> None:
        # Autocommit: each statement is its own transaction, one round trip per request.
        self.pool = AsyncConnectionPool(
            database_url, min_size=4, max_size=16, kwargs={"autocommit": True}, open=False
        )
        self.redis = redis.asyncio.Redis.from_url(redis_url)

    @classmethod
    async def from_environ(cls) -> PostgresRedisBackend:
        """Opens a backend on the URLs ``main()`` put in the environment."""
        backend = cls(os.environ[DATABASE_URL_ENV], os.environ[REDIS_URL_ENV])
        await backend.pool.open(wait=True, timeout=30)
        return backend

    async def insert_job(self, job_id: uuid.UUID, body: Any) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(INSERT_SQL, (job_id, Jsonb(body)))

    async def get_job(self, job_id: uuid.UUID) -> JobRow | None:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(SELECT_SQL, (job_id,))
            row = await cursor.fetchone()
        return None if row is None else (row[0], row[1], row[2])

    async def publish(self, message: bytes) -> None:
        await self.redis.lpush(REDIS_LIST, message)

    async def close(self) -> None:
        await self.pool.close()
        await self.redis.aclose()


# --- HTTP ---------------------------------------------------------------------------------------
async def respond(send: Send, status: int, payload: Any) -> None:
    """Sends a complete JSON response."""
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def error(message: str) -> dict[str, str]:
    return {"error": message}


async def read_body(receive: Receive) -> bytes | None:
    """The request body, or None when the client went away or sent more than MAX_BODY."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def parse_job_id(path: str) -> uuid.UUID | None:
    """The uuid in ``/ref/jobs/<uuid>``, or None."""
    try:
        return uuid.UUID(path[len(JOBS_PATH) + 1 :])
    except ValueError:
        return None


class ReferenceApp:
    """The ASGI callable: lifespan opens and closes the backend, HTTP routes to two handlers."""

    def __init__(self, open_backend: Callable[[], Awaitable[Backend]]) -> None:
        self._open_backend = open_backend
        self.backend: Backend | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] == "http":
            await self.http(scope, receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.backend = await self._open_backend()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.backend is not None:
                    await self.backend.close()
                    self.backend = None
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if path == "/health":
            await respond(send, 200, {"status": "ok"})
        elif path == JOBS_PATH:
            await (self.submit(receive, send) if method == "POST" else not_allowed(send))
        elif path.startswith(JOBS_PATH + "/"):
            await (self.poll(path, send) if method == "GET" else not_allowed(send))
        else:
            await respond(send, 404, error("Not found."))

    def _backend(self) -> Backend:
        if self.backend is None:
            raise RuntimeError("the backend opens on lifespan startup; run with lifespan on")
        return self.backend

    async def submit(self, receive: Receive, send: Send) -> None:
        """POST /ref/jobs: store the body, publish the id, answer 202."""
        raw = await read_body(receive)
        if raw is None:
            await respond(send, 400, error("The body is missing or too large."))
            return
        try:
            body = json.loads(raw)
        except ValueError:
            await respond(send, 400, error("The body is not valid JSON."))
            return
        if not isinstance(body, dict):
            await respond(send, 400, error("The body must be a JSON object."))
            return
        backend = self._backend()
        job_id = uuid.uuid4()
        await backend.insert_job(job_id, body)
        await backend.publish(json.dumps({"id": str(job_id)}).encode())
        await respond(send, 202, {"id": str(job_id), "status": "pending"})

    async def poll(self, path: str, send: Send) -> None:
        """GET /ref/jobs/<uuid>: the stored job, or 404."""
        job_id = parse_job_id(path)
        row = None if job_id is None else await self._backend().get_job(job_id)
        if row is None:
            await respond(send, 404, error("No such job."))
            return
        await respond(
            send, 200, {"id": str(row[0]), "body": row[1], "created_at": row[2].isoformat()}
        )


async def not_allowed(send: Send) -> None:
    await respond(send, 405, error("Method not allowed."))


app = ReferenceApp(PostgresRedisBackend.from_environ)


# --- setup and cleanup --------------------------------------------------------------------------
def setup(database_url: str) -> None:
    """Creates the reference table when it is missing."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(CREATE_SQL)


def truncate(database_url: str) -> None:
    """Empties the reference table."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLE}")


def cleanup(redis_url: str) -> None:
    """Deletes the Redis list the reference publishes to."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(REDIS_LIST)
    finally:
        client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the benchmark's bare ASGI reference.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--database-url",
        default=os.environ.get(DATABASE_URL_ENV, "postgres://root@127.0.0.1/postgres"),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get(REDIS_URL_ENV, "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--setup", action="store_true", help="create the table and exit")
    args = parser.parse_args(argv)
    # Once, before the workers start: concurrent CREATE TABLE IF NOT EXISTS can still collide.
    setup(args.database_url)
    if args.setup:
        return
    import uvicorn

    # Workers are separate processes that import the app by name, so they read the URLs from
    # the environment.
    os.environ[DATABASE_URL_ENV] = args.database_url
    os.environ[REDIS_URL_ENV] = args.redis_url
    uvicorn.run(
        "bench.reference:app",
        host=args.host,
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
