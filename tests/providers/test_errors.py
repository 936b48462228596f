from __future__ import annotations

import logging
import time
from email.utils import formatdate

import pytest

from providers.base import ProviderError
from providers.errors import (
    MAX_LOGGED_BODY_CHARS,
    MAX_MESSAGE_CHARS,
    REDACTED,
    error_from_response,
    error_from_transport,
    invalid_reply,
    json_object_from_reply,
    loggable_body,
    redact,
    retry_after_seconds,
)
from providers.transport import TransportError
from tests.providers.fakes import (
    ANTHROPIC,
    ANTHROPIC_KEY,
    OPENAI,
    OPENAI_KEY,
    anthropic_error,
    json_response,
    openai_error,
    raw_response,
)

PROXY_PAGE = (
    b"<html><body><h1>502 Bad Gateway</h1>\n<!-- upstream said: Authorization: Bearer "
    + OPENAI_KEY.encode()
    + b" -->\x1b[2J</body></html>"
)

# --- redact -------------------------------------------------------------------------------------


def test_redact_removes_given_secret_values() -> None:
    assert redact("token my-own-secret-value leaked", ["my-own-secret-value"]) == (
        f"token {REDACTED} leaked"
    )


@pytest.mark.parametrize(
    "key",
    [
        "sk-proj-AbCdEf0123456789xyz",
        "sk-ant-api03-AbCdEf0123456789xyz",
        "sk-bf-0123456789abcdef",
        "sk-0123456789abcdefABCDEF",
    ],
)
def test_redact_removes_key_shaped_tokens(key: str) -> None:
    assert redact(f"invalid: {key}.") == f"invalid: {REDACTED}."


def test_redact_removes_bearer_tokens() -> None:
    assert redact('header "Authorization: Bearer abc.def-123" rejected') == (
        f'header "Authorization: Bearer {REDACTED}" rejected'
    )


def test_redact_removes_key_like_token_after_the_word_key() -> None:
    text = "Incorrect API key provided: gsk_0123456789abcdefghij. See docs."
    assert redact(text) == f"Incorrect API key provided: {REDACTED}. See docs."
    assert redact("api_key=abcdef0123456789ABCDEF") == f"api_key={REDACTED}"


def test_redact_keeps_ordinary_prose() -> None:
    text = "missing key: invalid_authentication_header; retry in 20 seconds"
    assert redact(text) == text


def test_redact_ignores_empty_and_tiny_secrets() -> None:
    assert redact("nothing to hide", ["", "to"]) == "nothing to hide"


# --- error_from_response ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 529])
def test_retryable_statuses_are_transient(status: int) -> None:
    error = error_from_response(json_response(status, {}), OPENAI)
    assert error.transient is True
    assert error.status_code == status


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_client_errors_are_permanent(status: int) -> None:
    assert error_from_response(json_response(status, {}), OPENAI).transient is False


def test_openai_error_body_is_relayed() -> None:
    response = openai_error(
        400,
        "This model's maximum context length is 4097 tokens.",
        code="context_length_exceeded",
        param="prompt",
    )
    error = error_from_response(response, OPENAI)
    assert error.message == "This model's maximum context length is 4097 tokens."
    assert error.error_type == "invalid_request_error"
    assert error.code == "context_length_exceeded"
    assert error.param == "prompt"
    assert error.status_code == 400
    assert error.is_gateway_error is False


def test_anthropic_error_body_is_relayed() -> None:
    error = error_from_response(anthropic_error(529, "overloaded_error", "Overloaded"), ANTHROPIC)
    assert error.message == "Overloaded"
    assert error.error_type == "overloaded_error"
    assert error.code == "overloaded_error"
    assert error.transient is True
    assert error.is_gateway_error is False


def test_plain_string_and_detail_error_bodies_are_understood() -> None:
    assert error_from_response(
        json_response(404, {"error": "model not found"}), OPENAI
    ).message == ("model not found")
    assert error_from_response(json_response(400, {"detail": "bad prompt"}), OPENAI).message == (
        "bad prompt"
    )


def test_missing_fields_fall_back_to_status_defaults() -> None:
    error = error_from_response(openai_error(429, "Slow down", error_type=""), OPENAI)
    assert error.error_type == "rate_limit_error"
    assert error.code == "rate_limit_error"


def test_non_json_error_body_gives_the_caller_a_generic_message_with_the_status() -> None:
    response = raw_response(502, b"<html><body>Bad   gateway</body></html>", "text/html")
    error = error_from_response(response, OPENAI)
    assert error.message == "openai returned a non-JSON error (HTTP 502)"
    assert "html" not in error.message.lower()
    assert error.error_type == "api_error"
    assert error.transient is True
    assert error.is_gateway_error is False  # the status and its meaning are still the provider's


def test_non_json_error_body_is_logged_redacted_and_escaped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="providers.errors"):
        error = error_from_response(raw_response(502, PROXY_PAGE, "text/html"), OPENAI)
    [record] = caplog.records
    logged = record.getMessage()
    assert "502 Bad Gateway" in logged and "openai" in logged and "HTTP 502" in logged
    assert OPENAI_KEY not in logged and REDACTED in logged
    assert "\x1b" not in logged and "\n" not in logged
    assert "\\x1b[2J" in logged and "\\n" in logged
    assert "Bad Gateway" not in error.message


def test_json_error_body_without_a_message_is_not_relayed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    response = json_response(500, {"trace": "at internal.host:8443", "ok": False})
    with caplog.at_level(logging.WARNING, logger="providers.errors"):
        error = error_from_response(response, OPENAI)
    assert error.message == "openai returned HTTP 500 without an error message"
    assert "internal.host:8443" in caplog.text


def test_logged_error_body_is_bounded() -> None:
    logged = loggable_body(b"<p>" + b"\x00" * 100_000 + b"</p>")
    assert len(logged) <= MAX_LOGGED_BODY_CHARS
    assert logged.startswith("<p>\\x00")


def test_logged_error_body_loses_a_key_that_straddles_the_cut() -> None:
    body = b"x" * (MAX_LOGGED_BODY_CHARS - 5) + OPENAI_KEY.encode()
    logged = loggable_body(body, [OPENAI_KEY])
    assert OPENAI_KEY[:5] not in logged


def test_empty_error_body_gives_generic_message() -> None:
    assert error_from_response(raw_response(503, b""), OPENAI).message == "openai returned HTTP 503"


def test_huge_error_body_is_truncated() -> None:
    error = error_from_response(raw_response(500, b"x" * 100_000), OPENAI)
    assert len(error.message) <= MAX_MESSAGE_CHARS


def test_upstream_message_containing_the_api_key_is_redacted() -> None:
    response = openai_error(401, f"Incorrect API key provided: {OPENAI_KEY}. Check it.")
    error = error_from_response(response, OPENAI)
    assert OPENAI_KEY not in error.message
    assert OPENAI_KEY not in str(error)
    assert REDACTED in error.message


def test_configured_key_without_a_known_shape_is_redacted() -> None:
    credentials = type(OPENAI)(
        provider="local", protocol="openai", base_url="http://127.0.0.1/v1", api_key="hunter2-pw"
    )
    error = error_from_response(json_response(401, {"error": "bad key hunter2-pw"}), credentials)
    assert "hunter2-pw" not in error.message


def test_retry_after_header_is_read_into_seconds() -> None:
    response = openai_error(429, "Rate limit", headers={"retry-after": "7"})
    assert error_from_response(response, OPENAI).retry_after == 7.0


def test_no_retry_after_header_means_none() -> None:
    assert error_from_response(openai_error(429, "Rate limit"), OPENAI).retry_after is None


# --- retry_after_seconds ------------------------------------------------------------------------


def test_retry_after_ms_wins_over_retry_after() -> None:
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5


def test_retry_after_as_http_date() -> None:
    seconds = retry_after_seconds({"retry-after": formatdate(time.time() + 30, usegmt=True)})
    assert seconds is not None
    assert 28 <= seconds <= 30


def test_retry_after_in_the_past_is_zero() -> None:
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0


@pytest.mark.parametrize("value", ["soon", "nan", "inf", ""])
def test_unreadable_retry_after_is_ignored(value: str) -> None:
    assert retry_after_seconds({"retry-after": value}) is None


def test_negative_retry_after_is_zero() -> None:
    assert retry_after_seconds({"retry-after": "-3"}) == 0.0


# --- error_from_transport and invalid_reply -----------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("timeout", 504, "upstream_timeout"),
        ("connect", 502, "upstream_unreachable"),
        ("protocol", 502, "upstream_protocol_error"),
    ],
)
def test_transport_failures_are_transient_gateway_errors(kind: str, status: int, code: str) -> None:
    error = error_from_transport(TransportError(kind, "it broke"))
    assert (error.status_code, error.code) == (status, code)
    assert error.transient is True
    assert error.is_gateway_error is True
    assert error.error_type == "api_error"
    assert error.message == "it broke"


# --- redirects ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_a_permanent_gateway_502_named_upstream_redirect(status: int) -> None:
    location = "http://10.0.0.5:8080/steal?token=abc123SECRET"
    response = raw_response(status, b"<a href='x'>moved, keep this body out</a>", location=location)
    with pytest.raises(ProviderError) as raised:
        json_object_from_reply(response, ANTHROPIC)
    error = raised.value
    assert (error.status_code, error.code, error.error_type) == (
        502,
        "upstream_redirect",
        "api_error",
    )
    assert error.transient is False
    assert error.is_gateway_error is True
    assert f"HTTP {status}" in error.message and "redirect" in error.message
    for secret in ("abc123SECRET", "/steal", "10.0.0.5", "keep this body out", ANTHROPIC_KEY):
        assert secret not in error.message


def test_redirect_logs_only_the_origin_of_its_location(caplog: pytest.LogCaptureFixture) -> None:
    response = raw_response(307, b"", location="https://user:pw@evil.example:8443/p?token=abc123")
    with caplog.at_level(logging.WARNING, logger="providers.errors"), pytest.raises(ProviderError):
        json_object_from_reply(response, OPENAI)
    assert "https://evil.example:8443" in caplog.text
    for hidden in ("user:pw", "pw@", "/p?", "abc123"):
        assert hidden not in caplog.text


def test_invalid_reply_is_a_permanent_gateway_502() -> None:
    error = invalid_reply("not JSON")
    assert (error.status_code, error.code, error.error_type) == (
        502,
        "invalid_upstream_response",
        "api_error",
    )
    assert error.transient is False
    assert error.is_gateway_error is True
