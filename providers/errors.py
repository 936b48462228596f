"""Turn whatever went wrong upstream into one ``ProviderError``, with no secret left in it.

Every message built here may end up in a job row, an API response and a log line, so each one is
redacted and bounded before it leaves this module.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Iterable
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from providers.base import Credentials, ProviderError
from providers.logsafe import logsafe
from providers.transport import HttpResponse, TransportError

logger = logging.getLogger(__name__)

REDACTED = "[redacted]"

# Long enough for any useful provider explanation, short enough that an HTML error page from a
# proxy cannot bloat a job row.
MAX_MESSAGE_CHARS = 500

# An error body the caller never sees is logged for operators, this much of it at most.
MAX_LOGGED_BODY_CHARS = 1000

# Control characters could forge log lines or drive a terminal; they are logged escaped.

_NOT_JSON = object()

# Values this short are not credentials, and removing them would shred ordinary words.
_MIN_SECRET_CHARS = 4

_KEY_PATTERNS: tuple[re.Pattern[str], ...] = (
    # OpenAI (sk-, sk-proj-), Anthropic (sk-ant-) and our own virtual keys (sk-bf-).
    re.compile(r"\bsk-[A-Za-z0-9_\-*]{8,}"),
    # Google API keys, used by Gemini-compatible endpoints.
    re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"),
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]{8,}")
# "Incorrect API key provided: abcd1234...", "api_key=...", "x-api-key: ...": the token after the
# word must look like a key (long, with a digit) so that prose such as "key: invalid_header" stays.
_AFTER_KEY = re.compile(
    r"(?i)(key(?:\s+provided)?[\"']?\s*[:=]?\s*[\"']?)"  # the word and its separator, kept
    r"(?=[\w\-.*]*\d)([A-Za-z0-9][\w\-.*]{14,}[\w\-*])"  # the token, replaced
)

_TRANSIENT_STATUSES = frozenset({408, 409, 425, 429})

_DEFAULT_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace the given secret values and anything shaped like an API key or bearer token."""
    # Longest first, so a secret that contains another is removed whole.
    for secret in sorted({s for s in secrets if s and len(s) >= _MIN_SECRET_CHARS}, key=len)[::-1]:
        text = text.replace(secret, REDACTED)
    for pattern in _KEY_PATTERNS:
        text = pattern.sub(REDACTED, text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    return _AFTER_KEY.sub(lambda m: m.group(1) + REDACTED, text)


def without_secret(value: Any, secret: str) -> Any:
    """A decoded reply with ``secret`` replaced in every string, keys included.

    Only the configured key is removed: a successful reply is the model's output, where text
    merely shaped like a key is the caller's business.
    """
    if not secret or len(secret) < _MIN_SECRET_CHARS:
        return value
    if isinstance(value, str):
        return value.replace(secret, REDACTED) if secret in value else value
    if isinstance(value, dict):
        return {without_secret(k, secret): without_secret(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [without_secret(item, secret) for item in value]
    return value


def is_transient_status(status: int) -> bool:
    # 409 is retried by the official SDKs too: providers use it for a lock that times out.
    return status in _TRANSIENT_STATUSES or status >= 500


def error_from_response(response: HttpResponse, credentials: Credentials) -> ProviderError:
    """Normalise a non-2xx reply: the provider's own message, type and code when it sent them.

    A body with no message to relay (an HTML page from a proxy, say) is never passed on: the
    caller gets a generic message with the status, operators the redacted body in the log.
    """
    status = response.status
    payload = _json_or_not(response.body)
    details = _error_details(payload)
    default_type = _DEFAULT_TYPES.get(
        status, "api_error" if status >= 500 else "invalid_request_error"
    )
    error_type = details.get("type") or default_type
    message = details.get("message") or _unexplained(
        response, credentials, is_json=payload is not _NOT_JSON
    )
    return ProviderError(
        _clean(message, credentials),
        status_code=status,
        error_type=error_type,
        code=details.get("code") or error_type,
        transient=is_transient_status(status),
        is_gateway_error=False,
        retry_after=retry_after_seconds(response.headers),
        param=details.get("param"),
    )


def redirect_refused(response: HttpResponse, credentials: Credentials) -> ProviderError:
    """A 3xx reply. Following it would send the prompt, and a key in a header such as
    ``x-api-key``, to whatever host the Location names, so the try fails instead. It is
    permanent: the provider would send the same redirect again. Neither the Location (its query
    may carry a token) nor the body goes into the error; the log names only the target's origin.
    """
    logger.warning(
        "%s answered HTTP %d redirecting to %s; redirects from providers are not followed",
        credentials.provider,
        response.status,
        _origin(response.headers.get("location", "")),
    )
    return ProviderError(
        f"{credentials.provider} answered with a redirect (HTTP {response.status}), "
        "which the gateway does not follow",
        status_code=502,
        error_type="api_error",
        code="upstream_redirect",
        transient=False,
        is_gateway_error=True,
    )


def loggable_body(body: bytes, secrets: Iterable[str] = ()) -> str:
    """An upstream body fit for a log line: redacted, control characters escaped, bounded."""
    # Slack before redacting, so a key straddling the final cut is still whole when removed.
    text = body[: MAX_LOGGED_BODY_CHARS * 8].decode("utf-8", errors="replace")
    return _truncate(logsafe(redact(text, secrets)), MAX_LOGGED_BODY_CHARS)


def error_from_transport(exc: TransportError) -> ProviderError:
    """No HTTP reply at all: the gateway reports it, and it is always worth another try."""
    status, code = {
        "timeout": (504, "upstream_timeout"),
        "connect": (502, "upstream_unreachable"),
    }.get(exc.kind, (502, "upstream_protocol_error"))
    return ProviderError(
        _truncate(redact(exc.message)),
        status_code=status,
        error_type="api_error",
        code=code,
        transient=True,
        is_gateway_error=True,
    )


def invalid_reply(message: str) -> ProviderError:
    """A 2xx reply the gateway cannot use; asking again would most likely get the same answer."""
    return ProviderError(
        _truncate(redact(message)),
        status_code=502,
        error_type="api_error",
        code="invalid_upstream_response",
        transient=False,
        is_gateway_error=True,
    )


def json_object_from_reply(response: HttpResponse, credentials: Credentials) -> dict[str, Any]:
    """The JSON object of a successful reply, or the ``ProviderError`` that explains why not."""
    if 300 <= response.status < 400:
        raise redirect_refused(response, credentials)
    if not 200 <= response.status < 300:
        raise error_from_response(response, credentials)
    content_type = response.headers.get("content-type", "")
    if "json" not in content_type.lower():
        raise invalid_reply(
            f"{credentials.provider} replied with content type {content_type or 'none'!r}, "
            "expected JSON"
        )
    try:
        payload = json.loads(response.body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise invalid_reply(
            f"{credentials.provider} replied with a body that is not valid JSON"
        ) from exc
    if not isinstance(payload, dict):
        raise invalid_reply(f"{credentials.provider} replied with JSON that is not an object")
    return payload


def retry_after_seconds(headers: dict[str, str]) -> float | None:
    """Seconds the provider asked us to wait, from ``retry-after-ms`` or ``retry-after``."""
    millis = _non_negative_float(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _non_negative_float(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT, even when the zone says "-0000"
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())


def _non_negative_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    return max(0.0, number)


def _json_or_not(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return _NOT_JSON


def _error_details(payload: Any) -> dict[str, str]:
    """message/type/code/param from the OpenAI, Anthropic or a plain ``{"detail": ...}`` body."""
    if not isinstance(payload, dict):
        return {}
    error = payload.get("error")
    if isinstance(error, dict):
        # OpenAI: {"error": {message, type, code, param}}; Anthropic: {"type": "error",
        # "error": {type, message}}. Both put the useful part in the nested object.
        fields = {name: error.get(name) for name in ("message", "type", "code", "param")}
    elif isinstance(error, str):
        # Some OpenAI-compatible servers send the message itself as "error".
        fields = {"message": error}
    else:
        # FastAPI-based servers (vLLM among them) answer {"detail": ...}; others {"message": ...}.
        fields = {"message": payload.get("message") or payload.get("detail")}
    return {
        name: str(value)
        for name, value in fields.items()
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value)
    }


def _unexplained(response: HttpResponse, credentials: Credentials, *, is_json: bool) -> str:
    """The message for an error reply that carries none of its own."""
    provider, status = credentials.provider, response.status
    if not response.body.strip():
        return f"{provider} returned HTTP {status}"
    logger.warning(
        "%s answered HTTP %d with an error body that is not passed on to the caller: %s",
        provider,
        status,
        loggable_body(response.body, [credentials.api_key]),
    )
    if is_json:
        return f"{provider} returned HTTP {status} without an error message"
    return f"{provider} returned a non-JSON error (HTTP {status})"


def _origin(location: str) -> str:
    """Scheme, host and port of a Location: never its user info, path or query."""
    try:
        parts = urlsplit(location.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return "an unreadable location"
    if not host:
        return "another path on the same host" if location.strip() else "no location"
    origin = f"{parts.scheme}://{host}" if parts.scheme else host
    origin = f"{origin}:{port}" if port is not None else origin
    return _truncate(logsafe(origin), 200)


def _clean(message: str, credentials: Credentials) -> str:
    # Cut a huge body down before the regexes run, with slack so a key straddling the final cut
    # is still whole (and so still recognised) while redacting.
    return _truncate(redact(message[: MAX_MESSAGE_CHARS * 8], [credentials.api_key]))


def _truncate(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    if len(message) <= limit:
        return message
    return message[: limit - 1].rstrip() + "…"
