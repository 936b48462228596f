"""A scripted stand-in for the HTTP transport, shared by every test that calls a provider."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass
from typing import Any

from harness.upstream import UPSTREAM_OPENAI_KEY, Call, FakeUpstream
from providers.base import Adapter, Credentials
from providers.transport import AiohttpTransport, HttpResponse, Timeouts, TransportError

TIMEOUTS = Timeouts(total=30.0, connect=5.0)

OPENAI_KEY = "sk-proj-test0123456789abcdefTESTKEY"
ANTHROPIC_KEY = "sk-ant-api03-test0123456789abcdefTESTKEY"

OPENAI = Credentials(
    provider="openai", protocol="openai", base_url="https://api.openai.com/v1", api_key=OPENAI_KEY
)
ANTHROPIC = Credentials(
    provider="anthropic",
    protocol="anthropic",
    base_url="https://api.anthropic.com",
    api_key=ANTHROPIC_KEY,
)


@dataclass(frozen=True)
class RecordedRequest:
    url: str
    headers: dict[str, str]
    body: bytes
    timeouts: Timeouts

    def json(self) -> Any:
        return json.loads(self.body)


class FakeTransport:
    """Replays scripted replies in order and records every request it was sent.

    A scripted ``TransportError`` is raised instead of returned, as the real transport does when
    no HTTP response arrives. Running out of script fails the test loudly.
    """

    def __init__(self, *replies: HttpResponse | TransportError) -> None:
        self._replies: deque[HttpResponse | TransportError] = deque(replies)
        self.requests: list[RecordedRequest] = []

    def add(self, *replies: HttpResponse | TransportError) -> None:
        self._replies.extend(replies)

    @property
    def unused(self) -> int:
        return len(self._replies)

    async def close(self) -> None:
        """Nothing to release; here to satisfy the Transport protocol."""

    async def post(
        self, url: str, *, headers: dict[str, str], body: bytes, timeouts: Timeouts
    ) -> HttpResponse:
        self.requests.append(RecordedRequest(url, dict(headers), body, timeouts))
        if not self._replies:
            raise AssertionError(f"unexpected request #{len(self.requests)} to {url}")
        reply = self._replies.popleft()
        if isinstance(reply, TransportError):
            raise reply
        return reply


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(
        status=status,
        headers={"content-type": "application/json", **(headers or {})},
        body=json.dumps(payload).encode(),
    )


def raw_response(
    status: int, body: bytes, content_type: str = "text/plain", **headers: str
) -> HttpResponse:
    return HttpResponse(status=status, headers={"content-type": content_type, **headers}, body=body)


def openai_completion(text: str = "Hello!", **overrides: Any) -> dict[str, Any]:
    """A completion exactly as api.openai.com returns it."""
    reply: dict[str, Any] = {
        "id": "cmpl-abc123",
        "object": "text_completion",
        "created": 1764150000,
        "model": "gpt-3.5-turbo-instruct:20230824-v2",
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }
    reply.update(overrides)
    return reply


def anthropic_message(
    text: str = "Hello!",
    *,
    message_id: str = "msg_01ABC",
    stop_reason: str = "end_turn",
    input_tokens: int = 10,
    output_tokens: int = 4,
) -> dict[str, Any]:
    """A Messages API reply exactly as api.anthropic.com returns it."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-haiku-20241022",
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def openai_error(
    status: int,
    message: str,
    *,
    error_type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    return json_response(status, body, headers)


def anthropic_error(status: int, error_type: str, message: str) -> HttpResponse:
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return json_response(status, body)


def serve_from_fake_upstream(
    adapter: Adapter, model: str, params: dict[str, Any]
) -> tuple[dict[str, Any], list[Call]]:
    """What ``adapter`` makes of the fake upstream's answer over the real transport, and the
    calls the upstream received."""

    async def call(base_url: str) -> dict[str, Any]:
        transport = AiohttpTransport()
        credentials = Credentials("fake", "openai", f"{base_url}/v1", UPSTREAM_OPENAI_KEY)
        try:
            return await adapter.serve(transport, credentials, model, params, TIMEOUTS)
        finally:
            await transport.close()

    with FakeUpstream() as upstream:
        return asyncio.run(call(upstream.base_url)), upstream.calls()
