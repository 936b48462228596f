"""The benchmark's fake OpenAI-compatible upstream."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import aiohttp
from aiohttp import web

from bench.procs import Procs, free_port, wait_http
from bench.upstream import STATE, make_app, serving

Client = Callable[..., Awaitable[tuple[int, Any]]]


@asynccontextmanager
async def upstream(latency_ms: float = 0.0) -> AsyncIterator[tuple[web.Application, Client]]:
    """The upstream on a free port, and a ``call(method, path, json=...)`` helper."""
    app = make_app(latency_ms)
    async with serving(app) as base, aiohttp.ClientSession(base) as session:

        async def call(method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
            async with session.request(method, path, **kwargs) as response:
                return response.status, await response.json()

        yield app, call


def get_json(url: str) -> Any:
    """A JSON document by GET, without an event loop."""
    with urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def run_with_upstream(test: Callable[[web.Application, Client], Awaitable[None]]) -> None:
    async def main() -> None:
        async with upstream() as (app, call):
            await test(app, call)

    asyncio.run(main())


def test_completions_returns_a_text_completion_echoing_the_model() -> None:
    async def test(app: web.Application, call: Client) -> None:
        status, body = await call(
            "POST", "/v1/completions", json={"model": "gpt-bench", "prompt": "Say hi"}
        )
        assert status == 200
        assert body["object"] == "text_completion"
        assert body["id"].startswith("cmpl-")
        assert body["model"] == "gpt-bench"
        assert isinstance(body["created"], int)
        assert body["choices"] == [
            {
                "text": body["choices"][0]["text"],
                "index": 0,
                "logprobs": None,
                "finish_reason": "stop",
            }
        ]
        assert body["choices"][0]["text"]
        usage = body["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    run_with_upstream(test)


def test_chat_completions_returns_a_chat_completion() -> None:
    async def test(app: web.Application, call: Client) -> None:
        status, body = await call(
            "POST",
            "/v1/chat/completions",
            json={"model": "gpt-chat", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert status == 200
        assert body["object"] == "chat.completion"
        assert body["model"] == "gpt-chat"
        choice = body["choices"][0]
        assert choice["message"]["role"] == "assistant"
        assert choice["message"]["content"]
        assert choice["finish_reason"] == "stop"
        assert body["usage"]["total_tokens"] > 0

    run_with_upstream(test)


def test_responses_returns_a_completed_response_object() -> None:
    async def test(app: web.Application, call: Client) -> None:
        status, body = await call("POST", "/v1/responses", json={"model": "gpt-r", "input": "hi"})
        assert status == 200
        assert body["id"].startswith("resp_")
        assert body["object"] == "response"
        assert body["status"] == "completed"
        assert body["model"] == "gpt-r"
        assert isinstance(body["created_at"], int)
        [message] = body["output"]
        assert (message["type"], message["role"]) == ("message", "assistant")
        [content] = message["content"]
        assert content["type"] == "output_text"
        assert content["text"]
        assert content["annotations"] == []
        usage = body["usage"]
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]

    run_with_upstream(test)


def test_a_streamed_response_is_one_response_completed_event() -> None:
    async def main() -> None:
        app = make_app()
        async with serving(app) as base, aiohttp.ClientSession(base) as session:
            body = {"model": "gpt-r", "input": "hi", "stream": True}
            async with session.post("/v1/responses", json=body) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/event-stream")
                text = await response.text()
            async with session.post("/v1/completions", json={"model": "m", "stream": True}) as r:
                refused = r.status
        assert text.startswith("data: ") and text.endswith("\n\n")
        event = json.loads(text.removeprefix("data: "))
        assert event["type"] == "response.completed"
        assert event["response"]["status"] == "completed"
        assert event["response"]["model"] == "gpt-r"
        assert refused == 400

    asyncio.run(main())


def test_reply_ids_are_unique() -> None:
    async def test(app: web.Application, call: Client) -> None:
        replies = await asyncio.gather(
            *(call("POST", "/v1/completions", json={"model": "m"}) for _ in range(20))
        )
        assert len({body["id"] for _, body in replies}) == 20

    run_with_upstream(test)


def test_a_body_that_is_not_json_is_a_400() -> None:
    async def test(app: web.Application, call: Client) -> None:
        status, body = await call("POST", "/v1/completions", data=b"{not json")
        assert status == 400
        assert body["error"]["message"]

    run_with_upstream(test)


def test_latency_changes_at_run_time_and_peak_in_flight_is_counted() -> None:
    async def test(app: web.Application, call: Client) -> None:
        status, stats = await call("POST", "/__bench/latency", json={"ms": 200})
        assert (status, stats["latency_ms"]) == (200, 200)

        started = time.monotonic()
        await asyncio.gather(
            *(call("POST", "/v1/completions", json={"model": "m"}) for _ in range(10))
        )
        elapsed = time.monotonic() - started

        assert 0.2 <= elapsed < 1.0  # slept, and concurrently rather than one after another
        _, stats = await call("GET", "/__bench/stats")
        assert stats == {"requests": 10, "in_flight": 0, "peak_in_flight": 10, "latency_ms": 200}

        await call("POST", "/__bench/latency", json={"ms": 0})
        started = time.monotonic()
        await call("POST", "/v1/completions", json={"model": "m"})
        assert time.monotonic() - started < 0.15

    run_with_upstream(test)


def test_reset_zeroes_counters_but_keeps_latency() -> None:
    async def test(app: web.Application, call: Client) -> None:
        await call("POST", "/__bench/latency", json={"ms": 5})
        await call("POST", "/v1/responses", json={"model": "m"})
        status, stats = await call("POST", "/__bench/reset")
        assert status == 200
        assert stats == {"requests": 0, "in_flight": 0, "peak_in_flight": 0, "latency_ms": 5}
        assert app[STATE].requests == 0

    run_with_upstream(test)


def test_bad_latency_is_refused() -> None:
    async def test(app: web.Application, call: Client) -> None:
        for payload in ({"ms": -1}, {"ms": "fast"}, {"ms": True}, {}):
            status, _ = await call("POST", "/__bench/latency", json=payload)
            assert status == 400, payload
        assert app[STATE].latency_ms == 0

    run_with_upstream(test)


def test_runs_as_a_module_with_a_start_latency(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "bench.upstream", "--port", str(port), "--latency-ms", "30"]
    with Procs(tmp_path) as procs:
        proc = procs.start("upstream", argv)
        wait_http(
            f"http://127.0.0.1:{port}/health", timeout=20, log=tmp_path / "upstream.log", proc=proc
        )
        assert get_json(f"http://127.0.0.1:{port}/__bench/stats")["latency_ms"] == 30
        assert procs.stop("upstream") == 0  # a clean exit on SIGTERM
