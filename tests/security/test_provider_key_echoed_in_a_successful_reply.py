"""A provider that echoes its API key in a successful reply: the key never reaches the result a
job stores and a poll returns. (Error replies are redacted already: tests/providers/test_errors.py.)
"""

from __future__ import annotations

import json

import pytest

from providers.routing import RetryPolicy
from tests.providers.fakes import (
    ANTHROPIC_KEY,
    OPENAI_KEY,
    FakeTransport,
    anthropic_message,
    json_response,
    openai_completion,
)
from tests.providers.test_routing import FALLBACK, PRIMARY, route

ECHOES = {
    "openai": (
        PRIMARY,
        OPENAI_KEY,
        json_response(
            200,
            openai_completion(
                f"your key is {OPENAI_KEY}",
                id=f"cmpl-{OPENAI_KEY}",
                model=f"gpt-3.5-turbo-instruct {OPENAI_KEY}",
                system_fingerprint=OPENAI_KEY,
            ),
        ),
    ),
    "anthropic": (
        FALLBACK,
        ANTHROPIC_KEY,
        json_response(
            200, anthropic_message(f"key: {ANTHROPIC_KEY}", message_id=f"msg_{ANTHROPIC_KEY}")
        ),
    ),
}


@pytest.mark.parametrize("provider", list(ECHOES))
def test_a_provider_key_echoed_in_a_successful_reply_is_redacted_from_the_result(provider):
    target, secret, reply = ECHOES[provider]

    outcome = route(FakeTransport(reply), [target], policy=RetryPolicy(0, 0.0, 0.0))

    assert outcome.result is not None
    assert secret not in json.dumps(outcome.result)
    assert outcome.result["choices"][0]["text"].endswith("[redacted]")
