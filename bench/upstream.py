"""A fast fake OpenAI-compatible provider for the benchmark.

It answers ``/v1/completions``, ``/v1/chat/completions`` and ``/v1/responses`` with a fixed,
well-formed reply after a configurable latency, so a benchmark measures the gateway and not the
provider. The latency can be changed while it runs, and it counts requests and how many were in
flight at once (which shows how much concurrency the gateway's workers really reach)::

    python -m bench.upstream --port 9100 --latency-ms 1000
    curl -X POST localhost:9100/__bench/latency -d '{"ms": 0}'
    curl localhost:9100/__bench/stats

Each request costs one JSON parse and one ``json.dumps`` of a small dict; nothing is logged per
request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

REPLY_TEXT = "This is a reply from the benchmark upstream."
REPLY_TOKENS = 9
JSON_HEADERS = {"Content-Type": "application/json"}

Builder = Callable[[str, str, int, int], dict[str, Any]]


class UpstreamState:
    """Counters and the current latency, shared by all handlers of one server."""

    def __init__(self, latency_ms: float = 0.0) -> None:
        self.latency_ms = latency_ms
        self.requests = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self._prefix = f"bench{os.getpid():x}{int(time.time()):x}"
        self._serial = 0  # never reset, so reply ids stay unique

    def next_id(self) -> str:
        """A unique reply id suffix; a counter is cheaper than uuid4."""
        self._serial += 1
        return f"{self._prefix}{self._serial:010d}"

    def stats(self) -> dict[str, float | int]:
        return {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "latency_ms": self.latency_ms,
        }

    def reset(self) -> None:
        """Zeroes the counters; requests still in flight stay counted as in flight."""
        self.requests = 0
        self.peak_in_flight = self.in_flight


STATE = web.AppKey("state", UpstreamState)


# --- reply bodies -------------------------------------------------------------------------------
def _usage(prompt_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": REPLY_TOKENS,
        "total_tokens": prompt_tokens + REPLY_TOKENS,
    }


def completion_body(reply_id: str, model: str, created: int, prompt_tokens: int) -> dict[str, Any]:
    """An OpenAI ``text_completion`` object."""
    return {
        "id": f"cmpl-{reply_id}",
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"text": REPLY_TEXT, "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": _usage(prompt_tokens),
    }


def chat_body(reply_id: str, model: str, created: int, prompt_tokens: int) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` object."""
    return {
        "id": f"chatcmpl-{reply_id}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY_TEXT, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(prompt_tokens),
    }


def response_body(reply_id: str, model: str, created: int, prompt_tokens: int) -> dict[str, Any]:
    """An OpenAI Responses API ``response`` object."""
    return {
        "id": f"resp_{reply_id}",
        "object": "response",
        "created_at": created,
        "status": "completed",
        "model": model,
        "output": [
            {
                "type": "message",
                "id": f"msg_{reply_id}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": REPLY_TEXT, "annotations": []}],
            }
        ],
        "usage": {
            "input_tokens": prompt_tokens,
            "output_tokens": REPLY_TOKENS,
            "total_tokens": prompt_tokens + REPLY_TOKENS,
        },
    }


def _prompt_tokens(body: dict[str, Any]) -> int:
    """A rough token count of the request (a token is about four characters)."""
    text = body.get("prompt") or body.get("messages") or body.get("input") or ""
    return max(1, len(text if isinstance(text, str) else str(text)) // 4)


def _error(status: int, message: str) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None}}
    return web.Response(status=status, text=json.dumps(body), headers=JSON_HEADERS)


# --- handlers -----------------------------------------------------------------------------------
def response_completed_event(reply: dict[str, Any]) -> bytes:
    """A streamed Responses API answer as one server-sent event: ``response.completed``."""
    event = {"type": "response.completed", "sequence_number": 0, "response": reply}
    return f"data: {json.dumps(event)}\n\n".encode()


def _model_handler(
    state: UpstreamState, build: Builder, *, streams: bool = False
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler that waits the current latency and answers with ``build``'s object.

    With ``streams``, a request with ``"stream": true`` gets the object as one server-sent
    ``response.completed`` event (how a proxy running background responses reads the upstream).
    """

    async def handle(request: web.Request) -> web.Response:
        state.requests += 1
        state.in_flight += 1
        state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
        reply_id = state.next_id()
        try:
            try:
                body = json.loads(await request.read())
            except ValueError:
                return _error(400, "The body is not valid JSON.")
            if not isinstance(body, dict):
                return _error(400, "The body must be a JSON object.")
            if state.latency_ms > 0:
                await asyncio.sleep(state.latency_ms / 1000)
            model = str(body.get("model", ""))
            reply = build(reply_id, model, int(time.time()), _prompt_tokens(body))
            if body.get("stream") is True:
                if not streams:
                    return _error(400, "This endpoint does not stream.")
                return web.Response(
                    body=response_completed_event(reply),
                    headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
                )
            return web.Response(text=json.dumps(reply), headers=JSON_HEADERS)
        finally:
            state.in_flight -= 1

    return handle


def _control_routes(state: UpstreamState) -> list[web.RouteDef]:
    """The ``/__bench`` routes a benchmark uses to steer and read the upstream."""

    async def set_latency(request: web.Request) -> web.Response:
        try:
            ms = (await request.json())["ms"]
        except (ValueError, KeyError, TypeError):
            return _error(400, 'Send {"ms": <milliseconds>}.')
        if isinstance(ms, bool) or not isinstance(ms, int | float) or ms < 0:
            return _error(400, "ms must be a number >= 0.")
        state.latency_ms = float(ms)
        return web.json_response(state.stats())

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(state.stats())

    async def reset(request: web.Request) -> web.Response:
        state.reset()
        return web.json_response(state.stats())

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    return [
        web.post("/__bench/latency", set_latency),
        web.get("/__bench/stats", stats),
        web.post("/__bench/reset", reset),
        web.get("/health", health),
    ]


def make_app(latency_ms: float = 0.0) -> web.Application:
    """The upstream application; its state is ``app[STATE]``."""
    state = UpstreamState(latency_ms)
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app[STATE] = state
    app.add_routes(
        [
            web.post("/v1/completions", _model_handler(state, completion_body)),
            web.post("/v1/chat/completions", _model_handler(state, chat_body)),
            web.post("/v1/responses", _model_handler(state, response_body, streams=True)),
            *_control_routes(state),
        ]
    )
    return app


@asynccontextmanager
async def serving(app: web.Application, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serves ``app`` on a free port of the running event loop; yields its base URL.

    For callers that want the upstream (or any small aiohttp app) in-process rather than as
    ``python -m bench.upstream``.
    """
    listener = socket.create_server((host, 0), backlog=4096)
    runner = web.AppRunner(app, access_log=None)
    try:
        await runner.setup()
        await web.SockSite(runner, listener).start()
        yield f"http://{host}:{listener.getsockname()[1]}"
    finally:
        await runner.cleanup()
        listener.close()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is installed, else the standard one."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    run_until_stopped(make_app(args.latency_ms), args.host, args.port)


def run_until_stopped(app: web.Application, host: str, port: int, **options: Any) -> None:
    """Serve ``app`` on ``host:port`` until SIGINT or SIGTERM, quietly, on a uvloop loop."""
    web.run_app(
        app,
        host=host,
        port=port,
        access_log=None,
        # Load tests connect hundreds of clients in the same instant; connections beyond the
        # accept queue wait for a SYN retransmit and show up as one-second outliers.
        backlog=4096,
        print=None,
        loop=new_event_loop(),
        **options,
    )


if __name__ == "__main__":
    main()
