"""Per-job bounds at submit: GATEWAY_MAX_TOKENS_PER_JOB and GATEWAY_MAX_UPSTREAM_CALLS_PER_JOB."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.models import AsyncJob
from tests.helpers import assert_error_shape

pytestmark = pytest.mark.django_db

COMPLETIONS, CHAT, RESPONSES = (
    "/v1/async/completions",
    "/v1/async/chat/completions",
    "/v1/async/responses",
)
MESSAGES = [{"role": "user", "content": "Say hi"}]


def refused(response: Any, param: str, code: str) -> dict[str, Any]:
    body = assert_error_shape(response, 400, code=code)
    assert body["error"]["param"] == param, body["error"]
    assert not AsyncJob.objects.exists()
    return body


@pytest.mark.parametrize(
    ("url", "body", "param"),
    [
        (COMPLETIONS, {"model": "openai/m", "prompt": "x"}, "max_tokens"),
        (CHAT, {"model": "openai/m", "messages": MESSAGES}, "max_tokens"),
        (CHAT, {"model": "openai/m", "messages": MESSAGES}, "max_completion_tokens"),
        (RESPONSES, {"model": "openai/m", "input": "x"}, "max_output_tokens"),
        (COMPLETIONS, {"model": "anthropic/claude", "prompt": "x"}, "max_tokens"),
    ],
)
def test_a_token_bound_over_the_setting_is_400_naming_it(
    key_client, dispatched, settings, url, body, param
):
    settings.GATEWAY_MAX_TOKENS_PER_JOB = 1000
    response = key_client.post(url, {**body, param: 1001}, format="json")
    message = refused(response, param, "max_tokens_too_large")["error"]["message"]
    assert "1000" in message
    assert key_client.post(url, {**body, param: 1000}, format="json").status_code == 202


def test_the_default_token_bound_takes_large_outputs_and_refuses_a_million(key_client, dispatched):
    body = {"model": "openai/m", "prompt": "x", "max_tokens": 128_000}
    assert key_client.post(COMPLETIONS, body, format="json").status_code == 202
    response = key_client.post(COMPLETIONS, {**body, "max_tokens": 10**6}, format="json")
    assert response.status_code == 400


def test_calls_count_prompts_times_n_on_a_provider_that_fans_out(key_client, dispatched, settings):
    settings.GATEWAY_RETRIES = 2  # three tries per target
    settings.GATEWAY_MAX_UPSTREAM_CALLS_PER_JOB = 36
    body = {"model": "anthropic/claude", "prompt": ["a", "b", "c"], "n": 4}  # 12 per try
    assert key_client.post(COMPLETIONS, body, format="json").status_code == 202
    AsyncJob.objects.all().delete()
    settings.GATEWAY_MAX_UPSTREAM_CALLS_PER_JOB = 35
    response = key_client.post(COMPLETIONS, body, format="json")
    message = refused(response, "n", "too_many_upstream_calls")["error"]["message"]
    assert "36 upstream calls" in message


def test_calls_are_one_per_try_on_a_provider_that_batches(key_client, dispatched, settings):
    settings.GATEWAY_RETRIES = 2
    settings.GATEWAY_MAX_UPSTREAM_CALLS_PER_JOB = 3
    body = {"model": "openai/m", "prompt": ["a", "b", "c"], "n": 4}
    assert key_client.post(COMPLETIONS, body, format="json").status_code == 202


def test_every_target_adds_its_tries(key_client, dispatched, settings):
    settings.GATEWAY_RETRIES = 1
    settings.GATEWAY_MAX_UPSTREAM_CALLS_PER_JOB = 5
    body = {"model": "openai/m", "messages": MESSAGES, "fallbacks": ["openai/a", "openai/b"]}
    response = key_client.post(CHAT, body, format="json")  # 3 targets x 2 tries
    refused(response, "fallbacks", "too_many_upstream_calls")
    settings.GATEWAY_MAX_UPSTREAM_CALLS_PER_JOB = 6
    assert key_client.post(CHAT, body, format="json").status_code == 202


def test_a_fanning_fallback_counts_its_choices(key_client, dispatched, settings):
    settings.GATEWAY_RETRIES = 0
    settings.GATEWAY_MAX_UPSTREAM_CALLS_PER_JOB = 3
    body = {"model": "openai/m", "messages": MESSAGES, "n": 3, "fallbacks": ["anthropic/c"]}
    response = key_client.post(CHAT, body, format="json")  # 1 call on openai + 3 on anthropic
    refused(response, "n", "too_many_upstream_calls")
    settings.GATEWAY_MAX_UPSTREAM_CALLS_PER_JOB = 4
    assert key_client.post(CHAT, body, format="json").status_code == 202
