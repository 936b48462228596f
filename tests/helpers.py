"""Shared assertions for the gateway tests: the error contract (README.md, "The API"), the URLs."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.urls import reverse

from gateway.access.principals import Principal
from gateway.http.errors import WWW_AUTHENTICATE
from jobs import services
from jobs.models import RequestType

SUBMIT_URL = "/v1/async/completions"
VALID_BODY = {"model": "openai/gpt-test", "prompt": "Say hi", "max_tokens": 5}

ERROR_KEYS = {"event_id", "type", "is_bifrost_error", "status_code", "error", "extra_fields"}
ERROR_DETAIL_KEYS = {"type", "code", "message", "param", "event_id"}
EXTRA_FIELD_KEYS = {"provider", "model_requested", "request_type"}


def in_threads(target: Callable[[], None], count: int, timeout: float = 30.0) -> None:
    """Run ``target`` in ``count`` threads at once; return when all have ended."""
    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)


def submit_directly(key: Any) -> Any:
    """A completion job of ``key`` submitted through the service, as the view submits one."""
    return services.submit_job(
        principal=Principal(virtual_key=key),
        request_type=RequestType.TEXT_COMPLETION,
        provider="openai",
        model="gpt-4o-mini",
        fallbacks=[],
        request={"prompt": "x"},
        result_ttl=60,
    )


def poll_url(job_id: uuid.UUID | str) -> str:
    return reverse("poll-completion", args=[str(job_id)])


def unknown_job_url() -> str:
    return poll_url(uuid.uuid4())


def assert_error_shape(
    response: Any, status: int, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """The response is ``status`` with a JSON body in the one error shape; returns the body."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body: dict[str, Any] = json.loads(response.content)
    assert set(body) == ERROR_KEYS
    assert set(body["error"]) == ERROR_DETAIL_KEYS
    assert set(body["extra_fields"]) >= EXTRA_FIELD_KEYS
    assert body["status_code"] == status
    assert body["is_bifrost_error"] is True
    assert body["type"] == body["error"]["type"]
    assert body["event_id"] and body["event_id"] == body["error"]["event_id"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    if param is not None:
        assert body["error"]["param"] == param
    return body


def assert_unauthorized(response: Any, *, code: str | None = None) -> dict[str, Any]:
    body = assert_error_shape(response, 401, code=code)
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE
    assert body["type"] == "authentication_error"
    return body


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def b64url_decode_json(segment: str) -> dict[str, Any]:
    padded = segment + "=" * (-len(segment) % 4)
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return decoded


def bearer(token: str) -> dict[str, str]:
    """Headers for ``client.get(url, headers=...)`` carrying ``token`` as a bearer."""
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Bells:
    """Bells rung: broker messages that would have been published."""

    rung: int = 0

    def ring(self) -> None:
        self.rung += 1


class FakeClock:
    """A monotonic clock that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
