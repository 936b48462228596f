"""A scripted gateway behind ``httpx.MockTransport`` and a clock that only pretends to sleep."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import httpx

from gateway_client import Clock

CREATED = "2026-12-07T09:00:00Z"
DONE = "2026-12-07T09:00:05Z"


class FakeClock(Clock):
    def __init__(self) -> None:
        self.time = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.time += seconds

    async def sleep_async(self, seconds: float) -> None:
        self.sleep(seconds)


class ScriptedGateway:
    """Answers each request with the next scripted answer (an ``httpx.Response`` or an
    exception to raise) and keeps every request it was sent."""

    def __init__(self, answers: Iterable[httpx.Response | Exception]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests]


def job(
    status: str,
    *,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    status_code: int | None = None,
    job_id: str = "8c3f2d9e-0000-4000-8000-000000000001",
) -> dict[str, Any]:
    ended = status in {"completed", "failed", "cancelled"}
    return {
        "id": job_id,
        "status": status,
        "created_at": CREATED,
        "completed_at": DONE if ended else None,
        "expires_at": "2026-12-07T10:00:05Z" if ended else None,
        "status_code": status_code,
        "result": result,
        "error": error,
    }


def answer(
    status_code: int, body: dict[str, Any], retry_after: str | None = None
) -> httpx.Response:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return httpx.Response(status_code, json=body, headers=headers)


def error_shape(status_code: int, code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The gateway's error shape, as a refusal or a failed job's ``error`` carries it."""
    return {
        "event_id": "e0f1",
        "type": "api_error",
        "is_bifrost_error": False,
        "status_code": status_code,
        "error": {
            "type": "api_error",
            "code": code,
            "message": message,
            "param": extra.pop("param", None),
            "event_id": "e0f1",
        },
        "extra_fields": {
            "provider": "openai",
            "model_requested": "gpt-4o-mini",
            "request_type": "chat_completion",
            **extra,
        },
    }
