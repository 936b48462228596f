"""A fake LLM provider on 127.0.0.1 for the end-to-end tier.

One aiohttp server speaks both protocols the gateway calls: OpenAI ``POST /v1/completions`` and
Anthropic ``POST /v1/messages``. The requested model name picks the behaviour, so one server
serves every scenario at once:

- ``ok``: succeed; the text is derived from the prompt (``reply to: <prompt>``).
- ``fail-500``: always 500 with an OpenAI error body.
- ``flaky-503``: 503 on the first call for a given prompt, then succeed.
- ``bad-400``: 400 with an error body that echoes the caller's API key, as careless providers
  do, so the tests can prove the gateway redacts it.
- ``slow-<ms>``: sleep, then succeed.
- ``leak-500``: always 500, echoing the caller's API key in the message (retried, then failed).
- ``leak-garbled``: 200 with a reply no adapter can read, holding the caller's API key.
- ``leak-200``: succeed, echoing the caller's API key in the reply's id, model and text.
- ``redirect-302``, ``redirect-307``, ``redirect-308``: that redirect, its Location pointing at
  a second listener on 127.0.0.1 (the trap) with a token in the query, and a body of its own. The
  trap answers anything with a success and records every request it receives.
- ``html-502``: 502 with an HTML page, as a proxy in front of a provider sends, that echoes the
  caller's API key and holds control characters.

Any other model is a 404. Every request is logged with its headers, and the server counts how
many requests of each model were in flight at once.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

# The keys the gateway is configured with. The Anthropic one is not shaped like an "sk-" key on
# purpose: only the gateway's knowledge of its configured keys can keep it out of responses, job
# rows and logs, no pattern will.
UPSTREAM_OPENAI_KEY = "sk-upstream-e2e-SECRET123"
UPSTREAM_ANTHROPIC_KEY = "e2e-anthropic-SECRET456"

OPENAI_PATH = "/v1/completions"
ANTHROPIC_PATH = "/v1/messages"

# What a redirect carries that must never reach a job, a response or a log line.
REDIRECT_QUERY_TOKEN = "trap-query-SECRET789"
REDIRECT_BODY = "redirect-body-MARKER"
HTML_ERROR_MARKER = "proxy-page-MARKER"


@dataclass(frozen=True)
class Call:
    """One request the upstream received."""

    path: str
    model: str
    prompts: tuple[str, ...]
    headers: dict[str, str]  # lower-cased names
    status: int
    at: float


@dataclass(frozen=True)
class TrapCall:
    """One request that reached the trap, whatever its method or path."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class FakeUpstream:
    """Runs in a daemon thread with its own event loop; ``stop()`` shuts it down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._trap_calls: list[TrapCall] = []
        self._seen: dict[tuple[str, str], int] = defaultdict(int)
        self._in_flight: dict[str, int] = defaultdict(int)
        self._max_in_flight: dict[str, int] = defaultdict(int)
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._trap_runner: web.AppRunner | None = None
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fake-upstream", daemon=True
        )
        self._sock = _listening_socket()
        self.port: int = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._trap_sock = _listening_socket()
        self.trap_url = f"http://127.0.0.1:{self._trap_sock.getsockname()[1]}"

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeUpstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        for runner in (self._runner, self._trap_runner):
            if runner is not None:
                asyncio.run_coroutine_threadsafe(runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _serve(self) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post(OPENAI_PATH, self._openai)
        app.router.add_post(ANTHROPIC_PATH, self._anthropic)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # The gateway's worker opens hundreds of connections at once: a short accept queue would
        # stall some of them for a SYN retry and hide the concurrency under test.
        await web.SockSite(self._runner, self._sock, backlog=2048).start()
        trap = web.Application(client_max_size=8 * 1024 * 1024)
        trap.router.add_route("*", "/{tail:.*}", self._trap)
        self._trap_runner = web.AppRunner(trap, access_log=None)
        await self._trap_runner.setup()
        await web.SockSite(self._trap_runner, self._trap_sock).start()

    # --- what the tests read --------------------------------------------------------------------
    def calls(self, *, model: str | None = None, prompt: str | None = None) -> list[Call]:
        with self._lock:
            calls = list(self._calls)
        return [
            call
            for call in calls
            if (model is None or call.model == model) and (prompt is None or prompt in call.prompts)
        ]

    def trap_calls(self) -> list[TrapCall]:
        with self._lock:
            return list(self._trap_calls)

    def max_in_flight(self, model: str) -> int:
        with self._lock:
            return self._max_in_flight[model]

    async def _trap(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            self._trap_calls.append(
                TrapCall(
                    request.method,
                    request.path_qs,
                    {k.lower(): v for k, v in request.headers.items()},
                    body,
                )
            )
        return web.json_response({"trapped": True})

    def _redirect(self, request: web.Request, status: int) -> web.Response:
        location = f"{self.trap_url}{request.path}?token={REDIRECT_QUERY_TOKEN}"
        return web.Response(status=status, headers={"Location": location}, text=REDIRECT_BODY)

    # --- the two protocols ----------------------------------------------------------------------
    async def _openai(self, request: web.Request) -> web.Response:
        body = await request.json()
        model = str(body.get("model", ""))
        prompt = body.get("prompt", "")
        prompts = (prompt,) if isinstance(prompt, str) else tuple(str(p) for p in prompt)
        n = int(body.get("n") or 1)

        async def succeed(echo: str = "") -> web.Response:
            choices = [
                {
                    "text": reply_text(p) + echo,
                    "index": i * n + j,
                    "logprobs": None,
                    "finish_reason": "stop",
                }
                for i, p in enumerate(prompts)
                for j in range(n)
            ]
            prompt_tokens = sum(len(p.split()) for p in prompts)
            completion_tokens = sum(len(reply_text(p).split()) for p in prompts) * n
            return web.json_response(
                {
                    "id": f"cmpl-{uuid.uuid4().hex}{echo}",
                    "object": "text_completion",
                    "created": int(time.time()),
                    "model": model + echo,
                    "system_fingerprint": echo or None,
                    "choices": choices,
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                }
            )

        api_key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return await self._serve_model(request, model, prompts, succeed, api_key, openai_error)

    async def _anthropic(self, request: web.Request) -> web.Response:
        body = await request.json()
        model = str(body.get("model", ""))
        messages = body.get("messages") or [{}]
        prompts = (str(messages[0].get("content", "")),)

        async def succeed(echo: str = "") -> web.Response:
            text = reply_text(prompts[0]) + echo
            return web.json_response(
                {
                    "id": f"msg_{uuid.uuid4().hex}{echo}",
                    "type": "message",
                    "role": "assistant",
                    "model": model + echo,
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": len(prompts[0].split()),
                        "output_tokens": len(text.split()),
                    },
                }
            )

        api_key = request.headers.get("x-api-key", "")
        return await self._serve_model(request, model, prompts, succeed, api_key, anthropic_error)

    async def _serve_model(
        self,
        request: web.Request,
        model: str,
        prompts: tuple[str, ...],
        succeed: Callable[..., Awaitable[web.Response]],
        api_key: str,
        error: Callable[..., web.Response],
    ) -> web.Response:
        with self._lock:
            self._in_flight[model] += 1
            self._max_in_flight[model] = max(self._max_in_flight[model], self._in_flight[model])
            seen = self._seen[(model, prompts[0] if prompts else "")]
            self._seen[(model, prompts[0] if prompts else "")] += 1
        try:
            if model == "ok":
                response = await succeed()
            elif model == "fail-500":
                response = error(500, "api_error", "The upstream is broken.")
            elif model == "flaky-503":
                response = (
                    error(503, "overloaded_error", "Overloaded, try again.")
                    if seen == 0
                    else await succeed()
                )
            elif model == "bad-400":
                response = error(
                    400,
                    "invalid_request_error",
                    f"bad-400 rejects every request (key used: {api_key}).",
                    param="prompt",
                )
            elif model == "leak-500":
                response = error(500, "api_error", f"Internal error for key {api_key}.")
            elif model == "leak-garbled":
                response = web.json_response({"choices": {"key": api_key}, "content": api_key})
            elif model == "leak-200":
                response = await succeed(echo=f" [{api_key}]")
            elif model in ("redirect-302", "redirect-307", "redirect-308"):
                response = self._redirect(request, int(model.removeprefix("redirect-")))
            elif model == "html-502":
                page = (
                    f"<html><body><h1>502 Bad Gateway</h1><p>{HTML_ERROR_MARKER}</p>\n"
                    f"<!-- key={api_key} -->\x1b[2J</body></html>"
                )
                response = web.Response(status=502, text=page, content_type="text/html")
            elif model.startswith("slow-") and model.removeprefix("slow-").isdigit():
                await asyncio.sleep(int(model.removeprefix("slow-")) / 1000)
                response = await succeed()
            else:
                response = error(404, "not_found_error", f"The model {model!r} does not exist.")
        finally:
            with self._lock:
                self._in_flight[model] -= 1
        with self._lock:
            self._calls.append(
                Call(
                    request.path,
                    model,
                    prompts,
                    {k.lower(): v for k, v in request.headers.items()},
                    response.status,
                    time.time(),
                )
            )
        return response


def reply_text(prompt: str) -> str:
    return f"reply to: {prompt}"


def openai_error(
    status: int, error_type: str, message: str, param: str | None = None
) -> web.Response:
    body = {"error": {"message": message, "type": error_type, "param": param, "code": None}}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def anthropic_error(
    status: int, error_type: str, message: str, param: str | None = None
) -> web.Response:
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")
