from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from typing import Any

import pytest
from openai.types import Completion

from providers.anthropic import AnthropicCompletions
from providers.base import Adapter, Credentials, ProviderError, Target
from providers.openai import OpenAICompletions
from providers.routing import Attempt, RetryPolicy, RoutingOutcome, route_request
from providers.transport import Timeouts, Transport, TransportError
from tests.providers.fakes import (
    ANTHROPIC,
    OPENAI,
    OPENAI_KEY,
    TIMEOUTS,
    FakeTransport,
    anthropic_error,
    anthropic_message,
    json_response,
    openai_completion,
    openai_error,
    raw_response,
)

PRIMARY = Target("openai", "gpt-3.5-turbo-instruct")
FALLBACK = Target("anthropic", "claude-3-5-haiku-latest")
PARAMS = {"prompt": "Say hi", "max_tokens": 5}
ADAPTERS: dict[str, Adapter] = {
    "openai": OpenAICompletions(),
    "anthropic": AnthropicCompletions(),
}
CREDENTIALS: dict[str, Credentials | None] = {"openai": OPENAI, "anthropic": ANTHROPIC}


class RecordingSleep:
    """Stands in for ``asyncio.sleep`` so tests neither wait nor guess how long a wait was."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def route(
    transport: FakeTransport,
    targets: list[Target],
    *,
    policy: RetryPolicy | None = None,
    credentials: Mapping[str, Credentials | None] = CREDENTIALS,
    adapters: Mapping[str, Adapter] = ADAPTERS,
    sleep: RecordingSleep | None = None,
) -> RoutingOutcome:
    return asyncio.run(
        route_request(
            targets,
            PARAMS,
            transport=transport,
            credentials=credentials,
            adapters=adapters,
            policy=policy or RetryPolicy(retries=2, base_delay=0.5, max_delay=20.0),
            timeouts=TIMEOUTS,
            sleep=sleep or RecordingSleep(),
        )
    )


def ok() -> Any:
    return json_response(200, openai_completion("Hi"))


def unavailable(**headers: str) -> Any:
    return openai_error(503, "The server is overloaded", error_type="server_error", headers=headers)


def statuses(outcome: RoutingOutcome) -> list[tuple[str, int | None]]:
    return [(a.provider, a.status_code) for a in outcome.attempts]


# --- success paths ------------------------------------------------------------------------------


def test_primary_success_needs_one_try() -> None:
    transport = FakeTransport(ok())

    outcome = route(transport, [PRIMARY, FALLBACK])

    assert outcome.served_by == PRIMARY
    assert outcome.error is None and outcome.failed_target is None
    assert Completion.model_validate(outcome.result).choices[0].text == "Hi"
    assert outcome.attempts == [Attempt("openai", "gpt-3.5-turbo-instruct", 200, None, False)]


def test_retries_503_then_succeeds() -> None:
    transport = FakeTransport(unavailable(), unavailable(), ok())
    sleep = RecordingSleep()

    outcome = route(transport, [PRIMARY], sleep=sleep)

    assert outcome.served_by == PRIMARY
    assert statuses(outcome) == [("openai", 503), ("openai", 503), ("openai", 200)]
    assert [a.retryable for a in outcome.attempts] == [True, True, False]
    assert len(sleep.delays) == 2


def test_retries_429_then_succeeds() -> None:
    transport = FakeTransport(openai_error(429, "Rate limit reached", error_type="requests"), ok())

    outcome = route(transport, [PRIMARY])

    assert outcome.served_by == PRIMARY
    assert statuses(outcome) == [("openai", 429), ("openai", 200)]


@pytest.mark.parametrize("kind", ["timeout", "connect", "protocol"])
def test_transport_failures_are_retried(kind: str) -> None:
    transport = FakeTransport(TransportError(kind, "no answer"), ok())

    outcome = route(transport, [PRIMARY])

    assert outcome.served_by == PRIMARY
    assert [a.retryable for a in outcome.attempts] == [True, False]


def test_retries_exhausted_then_fallback_succeeds() -> None:
    transport = FakeTransport(
        unavailable(), unavailable(), unavailable(), json_response(200, anthropic_message("Hey"))
    )

    outcome = route(transport, [PRIMARY, FALLBACK])

    assert outcome.served_by == FALLBACK
    assert outcome.result is not None and outcome.result["choices"][0]["text"] == "Hey"
    assert statuses(outcome) == [
        ("openai", 503),
        ("openai", 503),
        ("openai", 503),
        ("anthropic", 200),
    ]
    assert transport.requests[-1].url == "https://api.anthropic.com/v1/messages"


def test_400_moves_to_fallback_without_retry() -> None:
    transport = FakeTransport(
        openai_error(400, "bad prompt"), json_response(200, anthropic_message())
    )
    sleep = RecordingSleep()

    outcome = route(transport, [PRIMARY, FALLBACK], sleep=sleep)

    assert outcome.served_by == FALLBACK
    assert statuses(outcome) == [("openai", 400), ("anthropic", 200)]
    assert outcome.attempts[0].retryable is False
    assert sleep.delays == []


def test_redirect_from_provider_fails_the_try_and_moves_to_the_fallback_without_retry() -> None:
    redirect = raw_response(307, b"", location="http://127.0.0.1:1/v1/completions?k=1")
    transport = FakeTransport(redirect, json_response(200, anthropic_message()))
    sleep = RecordingSleep()

    outcome = route(transport, [PRIMARY, FALLBACK], sleep=sleep)

    assert outcome.served_by == FALLBACK
    assert outcome.attempts[0] == Attempt(
        "openai", "gpt-3.5-turbo-instruct", 502, "upstream_redirect", False
    )
    assert sleep.delays == []
    assert [r.url for r in transport.requests] == [
        "https://api.openai.com/v1/completions",
        "https://api.anthropic.com/v1/messages",
    ]


def test_redirect_on_every_target_fails_with_the_primarys_redirect_error() -> None:
    transport = FakeTransport(
        raw_response(308, b"moved", location="https://elsewhere.example/v1/messages"),
        raw_response(302, b"moved", location="https://elsewhere.example/v1/completions"),
    )

    outcome = route(transport, [FALLBACK, PRIMARY])

    assert outcome.error is not None
    assert (outcome.error.status_code, outcome.error.code) == (502, "upstream_redirect")
    assert outcome.error.is_gateway_error is True
    assert outcome.failed_target == FALLBACK
    assert statuses(outcome) == [("anthropic", 502), ("openai", 502)]


def test_non_json_error_is_retried_like_its_status_and_reported_generically() -> None:
    page = raw_response(502, b"<html>nginx: bad gateway " + OPENAI_KEY.encode() + b"</html>")
    transport = FakeTransport(page, page, page)

    outcome = route(transport, [PRIMARY])

    assert outcome.error is not None
    assert outcome.error.message == "openai returned a non-JSON error (HTTP 502)"
    assert [a.retryable for a in outcome.attempts] == [True, True, True]


def test_zero_retries_means_one_try_per_target() -> None:
    transport = FakeTransport(unavailable(), json_response(200, anthropic_message()))

    outcome = route(transport, [PRIMARY, FALLBACK], policy=RetryPolicy(retries=0))

    assert statuses(outcome) == [("openai", 503), ("anthropic", 200)]


# --- failure paths ------------------------------------------------------------------------------


def test_all_failing_reports_the_primary_error_and_every_attempt() -> None:
    transport = FakeTransport(
        openai_error(404, "The model does not exist", code="model_not_found"),
        anthropic_error(500, "api_error", "Internal server error"),
        anthropic_error(529, "overloaded_error", "Overloaded"),
        anthropic_error(503, "api_error", "Unavailable"),
    )

    outcome = route(transport, [PRIMARY, FALLBACK])

    assert outcome.result is None and outcome.served_by is None
    assert outcome.failed_target == PRIMARY
    assert outcome.error is not None
    assert (outcome.error.status_code, outcome.error.code) == (404, "model_not_found")
    assert [a.to_dict() for a in outcome.attempts] == [
        {
            "provider": "openai",
            "model": "gpt-3.5-turbo-instruct",
            "status_code": 404,
            "code": "model_not_found",
            "retryable": False,
        },
        *(
            {
                "provider": "anthropic",
                "model": "claude-3-5-haiku-latest",
                "status_code": status,
                "code": code,
                "retryable": True,
            }
            for status, code in [(500, "api_error"), (529, "overloaded_error"), (503, "api_error")]
        ),
    ]


def test_primary_error_is_its_last_try() -> None:
    transport = FakeTransport(
        unavailable(), unavailable(), TransportError("timeout", "slow"), openai_error(400, "bad")
    )

    outcome = route(transport, [PRIMARY, Target("openai", "gpt-4o-mini")])

    assert outcome.error is not None
    assert (outcome.error.status_code, outcome.error.code) == (504, "upstream_timeout")
    assert outcome.failed_target == PRIMARY


def test_unconfigured_provider_is_skipped() -> None:
    transport = FakeTransport(json_response(200, anthropic_message()))
    missing = Target("groq", "llama-3.1-8b-instant")

    outcome = route(transport, [missing, FALLBACK], credentials={**CREDENTIALS, "groq": None})

    assert outcome.served_by == FALLBACK
    assert outcome.attempts[0] == Attempt(
        "groq", "llama-3.1-8b-instant", None, "provider_not_configured", False
    )
    assert len(transport.requests) == 1


def test_unconfigured_primary_is_the_reported_error_when_all_fail() -> None:
    transport = FakeTransport(openai_error(401, "bad key", code="invalid_api_key"))

    outcome = route(transport, [Target("mistral", "small"), PRIMARY])

    assert outcome.error is not None
    assert outcome.error.code == "provider_not_configured"
    assert outcome.error.status_code == 400
    assert outcome.error.is_gateway_error is True
    assert outcome.error.transient is False
    assert statuses(outcome) == [("mistral", None), ("openai", 401)]


def test_unknown_protocol_is_a_permanent_gateway_error() -> None:
    odd = Credentials("cohere", "cohere", "https://api.cohere.com", "key")

    outcome = route(FakeTransport(), [Target("cohere", "command")], credentials={"cohere": odd})

    assert outcome.error is not None
    assert outcome.error.code == "unsupported_provider_protocol"
    assert outcome.error.is_gateway_error is True


def test_unexpected_adapter_exception_becomes_a_permanent_502() -> None:
    class BrokenAdapter:
        async def serve(
            self,
            transport: Transport,
            credentials: Credentials,
            model: str,
            params: dict[str, Any],
            timeouts: Timeouts,
        ) -> dict[str, Any]:
            raise KeyError("choices")

    transport = FakeTransport(json_response(200, anthropic_message()))

    outcome = route(
        transport, [PRIMARY, FALLBACK], adapters={**ADAPTERS, "openai": BrokenAdapter()}
    )

    assert outcome.served_by == FALLBACK
    assert outcome.attempts[0] == Attempt(
        "openai", "gpt-3.5-turbo-instruct", 502, "internal_adapter_error", False
    )


def test_api_key_does_not_leak_into_the_outcome() -> None:
    transport = FakeTransport(openai_error(401, f"Incorrect API key provided: {OPENAI_KEY}"))

    outcome = route(transport, [PRIMARY])

    assert outcome.error is not None
    assert OPENAI_KEY not in outcome.error.message
    assert OPENAI_KEY not in repr([a.to_dict() for a in outcome.attempts])


def test_no_targets_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        route(FakeTransport(), [])


# --- backoff ------------------------------------------------------------------------------------


def test_backoff_ceiling_doubles_each_try(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    transport = FakeTransport(*(unavailable() for _ in range(4)))
    sleep = RecordingSleep()

    route(transport, [PRIMARY], policy=RetryPolicy(retries=3, base_delay=0.5), sleep=sleep)

    assert sleep.delays == [0.5, 1.0, 2.0]


def test_backoff_is_capped_by_max_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    transport = FakeTransport(*(unavailable() for _ in range(5)))
    sleep = RecordingSleep()

    route(
        transport,
        [PRIMARY],
        policy=RetryPolicy(retries=4, base_delay=1.0, max_delay=3.0),
        sleep=sleep,
    )

    assert sleep.delays == [1.0, 2.0, 3.0, 3.0]


def test_jitter_stays_between_zero_and_the_ceiling() -> None:
    policy = RetryPolicy(retries=3, base_delay=0.5, max_delay=20.0)
    for try_index, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (6, 20.0)]:
        delays = [policy.delay(try_index, None) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        # Full jitter spreads retries over the whole window rather than bunching at its top.
        assert min(delays) < ceiling / 4 and max(delays) > ceiling * 3 / 4


def test_retry_after_is_honoured() -> None:
    transport = FakeTransport(unavailable(**{"retry-after": "3"}), ok())
    sleep = RecordingSleep()

    route(transport, [PRIMARY], sleep=sleep)

    assert sleep.delays == [3.0]


def test_retry_after_is_capped_by_max_delay() -> None:
    transport = FakeTransport(unavailable(**{"retry-after": "600"}), ok())
    sleep = RecordingSleep()

    route(transport, [PRIMARY], policy=RetryPolicy(max_delay=20.0), sleep=sleep)

    assert sleep.delays == [20.0]


def test_no_sleep_after_the_last_try_of_a_target() -> None:
    transport = FakeTransport(unavailable(), unavailable(), json_response(200, anthropic_message()))
    sleep = RecordingSleep()

    route(transport, [PRIMARY, FALLBACK], policy=RetryPolicy(retries=1), sleep=sleep)

    assert len(sleep.delays) == 1


def test_negative_policy_values_are_rejected() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(retries=-1)


def test_timeouts_are_passed_to_the_transport() -> None:
    transport = FakeTransport(ok())

    route(transport, [PRIMARY])

    assert transport.requests[0].timeouts == Timeouts(total=30.0, connect=5.0)


def test_cancellation_is_not_recorded_as_a_failed_try() -> None:
    # A cancelled worker must stop, not be recorded as a failed try.
    class Cancelling:
        async def serve(self, *args: Any) -> dict[str, Any]:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        route(FakeTransport(), [PRIMARY], adapters={"openai": Cancelling()})


def test_provider_error_from_adapter_is_kept_as_is() -> None:
    error = ProviderError(
        "custom",
        status_code=418,
        error_type="x",
        code="teapot",
        transient=False,
        is_gateway_error=True,
    )

    class Refusing:
        async def serve(self, *args: Any) -> dict[str, Any]:
            raise error

    outcome = route(FakeTransport(), [PRIMARY], adapters={"openai": Refusing()})

    assert outcome.error is error


def test_a_hostile_target_and_provider_code_are_logged_escaped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A job's target comes from its caller, an error code from a provider's reply: neither
    may forge or garble a log line."""
    caplog.set_level(logging.DEBUG, logger="providers.routing")
    hostile = Target("openai", "m\nERROR forged line\x1b[2J\u2028")
    transport = FakeTransport(openai_error(400, "bad", code="bad\r\nINFO forged\x85\u2029"))

    outcome = route(transport, [hostile])

    assert outcome.error is not None
    (record,) = caplog.records
    message = record.getMessage()
    assert message.isprintable(), message
    assert "target=openai/m\\nERROR forged line\\x1b[2J\\u2028 " in message
    assert "code=bad\\r\\nINFO forged\\x85\\u2029 " in message


def test_an_adapter_failure_logs_the_hostile_target_escaped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class BrokenAdapter:
        async def serve(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            raise KeyError("choices")

    caplog.set_level(logging.DEBUG, logger="providers.routing")
    hostile = Target("openai", "m\n\u2028forged")

    route(FakeTransport(), [hostile], adapters={**ADAPTERS, "openai": BrokenAdapter()})

    messages = [record.getMessage() for record in caplog.records]
    assert "adapter openai failed unexpectedly for openai/m\\n\\u2028forged" in messages
    assert all(message.isprintable() for message in messages), messages
