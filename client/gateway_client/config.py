"""Where the gateway is and which key to use: arguments first, then the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping

from gateway_client.errors import GatewayClientError

DEFAULT_URL = "http://127.0.0.1:8000"
TTL_HEADER = "x-bf-async-job-result-ttl"
WEBHOOK_HEADER = "x-bf-async-webhook"


def base_url(given: str | None) -> str:
    return given or os.environ.get("GATEWAY_URL") or DEFAULT_URL


def auth_headers(api_key: str | None) -> dict[str, str]:
    key = api_key or os.environ.get("GATEWAY_API_KEY")
    if not key:
        raise GatewayClientError("no API key: pass api_key or set GATEWAY_API_KEY")
    return {"Authorization": f"Bearer {key}"}


def submit_headers(
    *, ttl: int | None, idempotency_key: str | None, webhook: str | None
) -> Mapping[str, str]:
    headers: dict[str, str] = {}
    if ttl is not None:
        headers[TTL_HEADER] = str(ttl)
    if idempotency_key is not None:
        # A structured-field string, so any printable key arrives as written.
        escaped = idempotency_key.replace("\\", "\\\\").replace('"', '\\"')
        headers["Idempotency-Key"] = f'"{escaped}"'
    if webhook is not None:
        headers[WEBHOOK_HEADER] = webhook
    return headers
