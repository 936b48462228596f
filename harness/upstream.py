"""The fake LLM provider on 127.0.0.1 that every tool points the gateway at.

One aiohttp server speaks OpenAI (``POST /v1/completions``, ``/v1/chat/completions``,
``/v1/embeddings`` and ``/v1/responses``, the last also streamed as one ``response.completed``
event when asked, for the benchmark's LiteLLM peer) and Anthropic (``POST /v1/messages``). The
requested model picks the behaviour, the same on every path, so one server serves every scenario:

- any model not named below: success after the current latency (0 unless set) with
  ``reply_text`` of the user's text (a chat's or a Messages request's last user message), or
  ``embedding_of`` each input; a Messages request with ``tools`` whose user text says "weather"
  gets a ``tool_use`` of the first tool. ``slow-<ms>``: the same after sleeping that long.
- ``fail-500``: always 500. ``flaky-503``: 503 on the first call for a prompt, then success.
- ``bad-400`` (a 400), ``leak-500`` (a 500), ``leak-garbled`` (a 200 no adapter can read),
  ``leak-200`` (a success) and ``html-502`` (a proxy's page holding control characters) echo
  the caller's API key, as careless providers do.
- ``redirect-302``, ``-307``, ``-308``: that redirect, with a body of its own, to the trap (a
  second listener that answers anything and records it) with a token in the query.
- ``fault-hang`` (no answer for ``hang_seconds``), ``fault-bad-json`` (a 200 JSON reply that does
  not parse), ``fault-wrong-type`` (a 200 HTML page), ``fault-truncated`` (half the announced
  body, then the connection is cut) and ``fault-close`` (cut before any answer).

``POST /__upstream/latency`` (``{"ms": N}``), ``GET /__upstream/stats`` and ``POST
/__upstream/reset`` steer and read it while it runs. In-process, ``FakeUpstream().start()`` serves
from a thread with its own event loop and records every call; ``python -m harness.upstream --port
P [--latency-ms N]`` keeps counters only, which costs little at thousands of calls a second.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import signal
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from harness.procs import request_json

# The keys the gateway is configured with. The Anthropic one is not shaped like an "sk-" key on
# purpose: only the gateway's knowledge of its configured keys can keep it out of responses, job
# rows and logs, no pattern will.
UPSTREAM_OPENAI_KEY = "sk-upstream-fake-SECRET123"
UPSTREAM_ANTHROPIC_KEY = "fake-anthropic-SECRET456"

OPENAI_PATH = "/v1/completions"
CHAT_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
RESPONSES_PATH = "/v1/responses"
ANTHROPIC_PATH = "/v1/messages"
CONTROL = "/__upstream"

# What a redirect or an error page carries that must never reach a job, a response or a log.
REDIRECT_QUERY_TOKEN = "trap-query-SECRET789"  # noqa: S105 - a marker, not a credential
REDIRECT_BODY = "redirect-body-MARKER"
HTML_ERROR_MARKER = "proxy-page-MARKER"

FAULTS = ("fault-hang", "fault-bad-json", "fault-wrong-type", "fault-truncated", "fault-close")
BROKEN_JSON = b'{"id": "cmpl-broken", "object": "text_completion", "choices": [{"text": "Hel'
EMBEDDING_SIZE = 8
TOOL_INPUT = {"city": "Paris"}  # what a tool call made on a "weather" question asks for


def reply_text(prompt: str) -> str:
    return f"reply to: {prompt}"


def embedding_of(text: str) -> list[float]:
    """A small vector that depends only on the text, so a test can predict it."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round(byte / 255, 4) for byte in digest[:EMBEDDING_SIZE]]


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


def _error(
    path: str, status: int, kind: str, message: str, param: str | None = None
) -> web.Response:
    """An error in the protocol of ``path``."""
    if path == ANTHROPIC_PATH:
        body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return web.json_response(body, status=status)


def _prompts(path: str, body: dict[str, Any]) -> tuple[str, ...]:
    """The user's text in a request: what a reply is derived from and a ``Call`` records. A chat,
    a Messages request and a Responses input list give their last user message's text."""
    if path in (OPENAI_PATH, EMBEDDINGS_PATH):
        given = body.get("input" if path == EMBEDDINGS_PATH else "prompt", "")
        return (given,) if isinstance(given, str) else tuple(str(p) for p in given)
    given = body.get("input", "") if path == RESPONSES_PATH else body.get("messages")
    if isinstance(given, str) and path == RESPONSES_PATH:
        return (given,)
    users = [m for m in given if isinstance(m, dict)] if isinstance(given, list) else []
    content = next((m.get("content") for m in reversed(users) if m.get("role") == "user"), "")
    if isinstance(content, str):
        return (content,)
    parts = [p for p in content if isinstance(p, dict)] if isinstance(content, list) else []
    return ("".join(p["text"] for p in parts if isinstance(p.get("text"), str)),)


def _words(texts: Any) -> int:
    return sum(len(text.split()) for text in texts)


def reply(
    path: str, reply_id: str, model: str, prompts: tuple[str, ...], body: dict[str, Any], echo: str
) -> dict[str, Any]:
    """A successful answer in the protocol of ``path``; ``echo`` is appended to what it names. A
    Messages reply is a ``tool_use`` of the first tool when the request offers tools and the user
    asks about the weather."""
    n = int(body.get("n") or 1)
    name = model + echo  # the model the reply names
    now = int(time.time())
    text = reply_text(prompts[0]) + echo if prompts else ""
    words_in, words_out = _words(prompts), _words([text])
    answer: dict[str, Any]
    usage: dict[str, Any]
    if path == EMBEDDINGS_PATH:
        data = [
            {"object": "embedding", "index": i, "embedding": embedding_of(given)}
            for i, given in enumerate(prompts)
        ]
        usage = {"prompt_tokens": words_in, "total_tokens": words_in}
        return {"object": "list", "data": data, "model": name, "usage": usage}
    if path == ANTHROPIC_PATH:
        content: list[dict[str, Any]] = [{"type": "text", "text": text}]
        stop, tools = "end_turn", body.get("tools")
        if tools and isinstance(tools, list) and "weather" in prompts[0].lower():
            tool = str(tools[0].get("name", "")) if isinstance(tools[0], dict) else ""
            use = {"type": "tool_use", "id": f"toolu_{reply_id}", "name": tool, "input": TOOL_INPUT}
            content, stop, words_out = [use], "tool_use", 5
        return {
            "id": f"msg_{reply_id}{echo}",
            "type": "message",
            "role": "assistant",
            "model": name,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": words_in, "output_tokens": words_out},
        }
    if path == RESPONSES_PATH:
        content = [{"type": "output_text", "text": text, "annotations": []}]
        output = {"type": "message", "id": f"msg_{reply_id}", "status": "completed"}
        usage = {
            "input_tokens": words_in,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": words_out,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": words_in + words_out,
        }
        return {
            "id": f"resp_{reply_id}{echo}",
            "object": "response",
            "created_at": now,
            "status": "completed",
            "model": name,
            "output": [output | {"role": "assistant", "content": content}],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": usage,
        }
    if path == CHAT_PATH:
        said = {"role": "assistant", "content": text, "refusal": None}
        choices = [
            {"index": i, "message": said, "logprobs": None, "finish_reason": "stop"}
            for i in range(n)
        ]
        answer = {"id": f"chatcmpl-{reply_id}{echo}", "object": "chat.completion"}
        words_out *= n
    else:
        texts = [reply_text(prompt) for prompt in prompts]
        choices = [
            {"text": each + echo, "index": i * n + j, "logprobs": None, "finish_reason": "stop"}
            for i, each in enumerate(texts)
            for j in range(n)
        ]
        answer = {"id": f"cmpl-{reply_id}{echo}", "object": "text_completion"}
        answer["system_fingerprint"] = echo or None
        words_out = _words(texts) * n
    usage = {
        "prompt_tokens": words_in,
        "completion_tokens": words_out,
        "total_tokens": words_in + words_out,
    }
    return answer | {"created": now, "model": name, "choices": choices, "usage": usage}


def _listening_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is installed, else the standard one."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class FakeUpstream:
    """The upstream and the trap, served from a daemon thread; ``stop()`` shuts both down.

    The handlers run on that thread's loop alone; the lock guards what other threads read."""

    def __init__(
        self,
        *,
        port: int = 0,
        latency_ms: float = 0.0,
        hang_seconds: float = 600.0,
        record: bool = True,
    ) -> None:
        self.latency_ms = latency_ms
        self.hang_seconds = hang_seconds
        self.record = record
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._trap_calls: list[TrapCall] = []
        self._flaky_seen: set[str] = set()  # prompts flaky-503 has refused once
        self._in_flight: Counter[str | None] = Counter()  # by model; None: all of them
        self._peak: Counter[str | None] = Counter()
        self._by_model: Counter[str] = Counter()
        self._ids = itertools.count(1)  # reply ids: cheaper than uuid4, and never reset
        self._socks = _listening_socket(port), _listening_socket(0)  # the upstream's, the trap's
        self.base_url, self.trap_url = (
            f"http://127.0.0.1:{s.getsockname()[1]}" for s in self._socks
        )
        self._loop = new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="upstream", daemon=True)
        self._runners: list[web.AppRunner] = []

    def start(self) -> FakeUpstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)
        return self

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for runner in self._runners:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _serve(self) -> None:
        upstream, trap = (web.Application(client_max_size=8 * 1024 * 1024) for _ in range(2))
        for path in (OPENAI_PATH, CHAT_PATH, EMBEDDINGS_PATH, RESPONSES_PATH, ANTHROPIC_PATH):
            upstream.router.add_post(path, self._model)
        upstream.router.add_route("*", CONTROL + "/{what}", self._control)
        upstream.router.add_get("/health", self._control)
        trap.router.add_route("*", "/{tail:.*}", self._trap)
        for app, sock in zip((upstream, trap), self._socks, strict=True):
            # Hanging calls are cut after a second on stop; the gateway's workers open hundreds
            # of connections at once, and a short accept queue would stall some for a SYN retry.
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
            await runner.setup()
            await web.SockSite(runner, sock, backlog=4096).start()
            self._runners.append(runner)

    # --- what a caller reads --------------------------------------------------------------------
    def calls(self, *, model: str | None = None, prompt: str | None = None) -> list[Call]:
        """The calls recorded: all, or those of ``model`` and with ``prompt`` among theirs."""
        with self._lock:
            return [
                c for c in self._calls if model in (None, c.model) and prompt in (None, *c.prompts)
            ]

    def trap_calls(self) -> list[TrapCall]:
        with self._lock:
            return list(self._trap_calls)

    def max_in_flight(self, model: str) -> int:
        with self._lock:
            return self._peak[model]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self._by_model.total(),
                "in_flight": self._in_flight[None],
                "peak_in_flight": self._peak[None],
                "latency_ms": self.latency_ms,
                "by_model": dict(self._by_model),
            }

    def reset(self) -> None:
        """Zeroes the counters; calls still in flight stay counted as in flight."""
        with self._lock:
            self._by_model.clear()
            self._calls.clear()
            self._peak = Counter(self._in_flight)

    # --- handlers -------------------------------------------------------------------------------
    async def _control(self, request: web.Request) -> web.Response:
        what = request.match_info.get("what", "stats")
        if what == "latency":
            try:
                ms = (await request.json())["ms"]
            except (ValueError, KeyError, TypeError):
                ms = None
            if isinstance(ms, bool) or not isinstance(ms, int | float) or ms < 0:
                return _error("", 400, "invalid_request_error", 'Send {"ms": <number >= 0>}.')
            self.latency_ms = float(ms)
        elif what == "reset":
            self.reset()
        elif what != "stats":
            return _error("", 404, "not_found_error", f"No control {what!r}.")
        return web.json_response(self.stats())

    async def _trap(self, request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        call = TrapCall(request.method, request.path_qs, headers, await request.read())
        with self._lock:
            self._trap_calls.append(call)
        return web.json_response({"trapped": True})

    async def _model(self, request: web.Request) -> web.StreamResponse:
        """The answer of the model a request names, counted (and recorded) as it goes."""
        path = request.path
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _error(path, 400, "invalid_request_error", "The body must be a JSON object.")
        model, prompts = str(body.get("model", "")), _prompts(path, body)
        with self._lock:
            self._by_model[model] += 1
            for name in (model, None):
                self._in_flight[name] += 1
                self._peak[name] = max(self._peak[name], self._in_flight[name])
        try:
            response = await self._answer(request, body, model, prompts)
        finally:
            with self._lock:
                self._in_flight.subtract((model, None))
        if self.record:
            headers = {k.lower(): v for k, v in request.headers.items()}
            call = Call(path, model, prompts, headers, response.status, time.time())
            with self._lock:
                self._calls.append(call)
        return response

    async def _answer(
        self, request: web.Request, body: dict[str, Any], model: str, prompts: tuple[str, ...]
    ) -> web.StreamResponse:
        path, reply_id = request.path, f"fake{next(self._ids):010d}"
        auth = request.headers.get("Authorization", "").removeprefix("Bearer ")
        key = request.headers.get("x-api-key", "") if path == ANTHROPIC_PATH else auth
        first = prompts[0] if prompts else ""
        if model == "flaky-503" and first not in self._flaky_seen:
            self._flaky_seen.add(first)
            return _error(path, 503, "overloaded_error", "Overloaded, try again.")
        if model in FAULTS:
            return await self._fault(request, model)
        if model == "fail-500":
            return _error(path, 500, "api_error", "The upstream is broken.")
        if model == "leak-500":
            return _error(path, 500, "api_error", f"Internal error for key {key}.")
        if model == "bad-400":
            message = f"bad-400 rejects every request (key used: {key})."
            return _error(path, 400, "invalid_request_error", message, param="prompt")
        if model == "leak-garbled":
            return web.json_response({"choices": {"key": key}, "content": key})
        if model == "html-502":
            page = f"<html><body><h1>502 Bad Gateway</h1><p>{HTML_ERROR_MARKER}</p>\n"
            page += f"<!-- key={key} -->\x1b[2J</body></html>"
            return web.Response(status=502, text=page, content_type="text/html")
        if model in ("redirect-302", "redirect-307", "redirect-308"):
            location = f"{self.trap_url}{path}?token={REDIRECT_QUERY_TOKEN}"
            status = int(model.removeprefix("redirect-"))
            return web.Response(status=status, headers={"Location": location}, text=REDIRECT_BODY)
        slow = model.removeprefix("slow-")
        delay = int(slow) / 1000 if model.startswith("slow-") and slow.isdigit() else 0.0
        if delay or self.latency_ms:
            await asyncio.sleep(delay or self.latency_ms / 1000)
        echo = f" [{key}]" if model == "leak-200" else ""
        answer = reply(path, reply_id, model, prompts, body, echo)
        if body.get("stream") is not True:
            return web.Response(text=json.dumps(answer), content_type="application/json")
        if path != RESPONSES_PATH:
            return _error(path, 400, "invalid_request_error", "This endpoint does not stream.")
        event = {"type": "response.completed", "sequence_number": 0, "response": answer}
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        return web.Response(text=f"data: {json.dumps(event)}\n\n", headers=headers)

    async def _fault(self, request: web.Request, model: str) -> web.StreamResponse:
        if model == "fault-hang":
            await asyncio.sleep(self.hang_seconds)
            return web.Response(status=504, text="the upstream hung on purpose")
        if model == "fault-bad-json":
            return web.Response(body=BROKEN_JSON, content_type="application/json")
        if model == "fault-wrong-type":
            page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            return web.Response(body=page, content_type="text/html")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if model == "fault-truncated":  # headers announce a whole reply; half of it is sent
            whole = json.dumps({"id": "cmpl-cut", "object": "text_completion", "choices": []})
            response.content_length = len(whole)
            await response.prepare(request)
            await response.write(whole.encode()[: len(whole) // 2])
        if request.transport is not None:
            request.transport.abort()
        return response  # never sent whole: the connection is gone


def control(base_url: str, what: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """Steer or read a running upstream: ``latency`` (with ``{"ms": N}``), ``stats``, ``reset``."""
    body = None if what == "stats" else json.dumps(payload or {}).encode()
    return request_json(f"{base_url}{CONTROL}/{what}", body)  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the fake upstream until SIGTERM.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    stopping = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stopping)  # for the server's thread too
    upstream = FakeUpstream(port=args.port, latency_ms=args.latency_ms, record=False).start()
    signal.sigwait(stopping)
    upstream.stop()


if __name__ == "__main__":
    main()
