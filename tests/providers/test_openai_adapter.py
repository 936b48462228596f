from __future__ import annotations

import asyncio
from typing import Any

import pytest
from openai.types import Completion

from providers.base import Credentials, ProviderError
from providers.openai import OpenAICompletions
from providers.transport import HttpResponse, TransportError
from tests.providers.fakes import (
    OPENAI,
    OPENAI_KEY,
    TIMEOUTS,
    FakeTransport,
    json_response,
    openai_completion,
    openai_error,
    raw_response,
)


def serve(
    transport: FakeTransport,
    params: dict[str, Any] | None = None,
    *,
    credentials: Credentials = OPENAI,
    model: str = "gpt-3.5-turbo-instruct",
) -> dict[str, Any]:
    params = {"prompt": "Say hi", "max_tokens": 5} if params is None else params
    return asyncio.run(OpenAICompletions().serve(transport, credentials, model, params, TIMEOUTS))


def complete_with(reply: dict[str, Any]) -> dict[str, Any]:
    return serve(FakeTransport(json_response(200, reply)))


def failure(reply: HttpResponse | TransportError) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        serve(FakeTransport(reply))
    return caught.value


# --- the request --------------------------------------------------------------------------------


def test_posts_params_and_model_to_the_completions_url() -> None:
    transport = FakeTransport(json_response(200, openai_completion()))
    params = {"prompt": ["a", "b"], "max_tokens": 5, "temperature": 0.2, "stop": ["\n"], "n": 2}

    serve(transport, params)

    [request] = transport.requests
    assert request.url == "https://api.openai.com/v1/completions"
    assert request.headers == {
        "Authorization": f"Bearer {OPENAI_KEY}",
        "Content-Type": "application/json",
    }
    assert request.json() == {**params, "model": "gpt-3.5-turbo-instruct"}
    assert request.timeouts == TIMEOUTS


def test_trailing_slash_in_base_url_is_ignored() -> None:
    transport = FakeTransport(json_response(200, openai_completion()))
    credentials = Credentials("vllm", "openai", "http://127.0.0.1:8000/v1/", "")

    serve(transport, credentials=credentials)

    assert transport.requests[0].url == "http://127.0.0.1:8000/v1/completions"


def test_empty_api_key_sends_no_authorization_header() -> None:
    transport = FakeTransport(json_response(200, openai_completion()))

    serve(transport, credentials=Credentials("ollama", "openai", "http://127.0.0.1/v1", ""))

    assert "Authorization" not in transport.requests[0].headers


def test_gateway_fields_and_nulls_are_not_forwarded() -> None:
    transport = FakeTransport(json_response(200, openai_completion()))

    serve(transport, {"prompt": "x", "fallbacks": ["anthropic/claude"], "suffix": None})

    assert transport.requests[0].json() == {"prompt": "x", "model": "gpt-3.5-turbo-instruct"}


@pytest.mark.parametrize(
    "params", [{"prompt": "x"}, {"prompt": [[1, 2]], "logprobs": 5, "echo": True, "best_of": 3}]
)
def test_nothing_an_openai_request_says_is_refused(params: dict[str, Any]) -> None:
    assert OpenAICompletions().refusal(params) is None


# --- a successful reply -------------------------------------------------------------------------


def test_openai_reply_is_returned_as_the_sdk_completion() -> None:
    result = serve(FakeTransport(json_response(200, openai_completion("Hi there"))))

    completion = Completion.model_validate(result)
    assert completion.id == "cmpl-abc123"
    assert completion.model == "gpt-3.5-turbo-instruct:20230824-v2"
    assert completion.created == 1764150000
    assert completion.choices[0].text == "Hi there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, 7)
    assert completion.usage.total_tokens == 12


def test_sparse_compatible_server_reply_is_completed() -> None:
    sparse = {"choices": [{"text": "ok", "finish_reason": None}, {"text": None}]}

    result = serve(FakeTransport(json_response(200, sparse)), model="llama3")

    completion = Completion.model_validate(result)
    assert completion.id.startswith("cmpl-") and len(completion.id) > len("cmpl-")
    assert completion.object == "text_completion"
    assert completion.model == "llama3"
    assert isinstance(completion.created, int) and completion.created > 0
    assert [c.index for c in completion.choices] == [0, 1]
    assert [c.text for c in completion.choices] == ["ok", ""]
    assert [c.finish_reason for c in completion.choices] == ["stop", "stop"]
    assert completion.usage is None
    assert "usage" not in result


@pytest.mark.parametrize(
    ("upstream", "normalised"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("content_filter", "content_filter"),
        ("eos", "stop"),
        ("abort", "stop"),
        (None, "stop"),
    ],
)
def test_finish_reason_is_mapped_to_what_the_sdk_accepts(
    upstream: str | None, normalised: str
) -> None:
    reply = openai_completion(
        choices=[{"text": "x", "index": 0, "logprobs": None, "finish_reason": upstream}]
    )

    result = serve(FakeTransport(json_response(200, reply)))

    assert Completion.model_validate(result).choices[0].finish_reason == normalised


def test_logprobs_and_system_fingerprint_are_kept() -> None:
    logprobs = {
        "tokens": ["Hi"],
        "token_logprobs": [-0.1],
        "top_logprobs": None,
        "text_offset": [0],
    }
    reply = openai_completion(
        choices=[{"text": "Hi", "index": 0, "logprobs": logprobs, "finish_reason": "length"}],
        system_fingerprint="fp_44709d6fcb",
    )

    result = serve(FakeTransport(json_response(200, reply)))

    completion = Completion.model_validate(result)
    assert completion.system_fingerprint == "fp_44709d6fcb"
    assert completion.choices[0].logprobs is not None
    assert completion.choices[0].logprobs.tokens == ["Hi"]


def test_missing_total_tokens_is_computed() -> None:
    reply = openai_completion(usage={"prompt_tokens": 3, "completion_tokens": 4})

    result = serve(FakeTransport(json_response(200, reply)))

    assert result["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


def test_usage_details_are_kept_and_their_stray_entries_dropped() -> None:
    usage = {
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "total_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 2, "note": "x"},
        "completion_tokens_details": "none",
    }

    result = complete_with(openai_completion(usage=usage))

    completion = Completion.model_validate(result)
    assert completion.usage is not None and completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 2
    assert result["usage"]["prompt_tokens_details"] == {"cached_tokens": 2}
    assert "completion_tokens_details" not in result["usage"]


def test_json_content_type_with_charset_is_accepted() -> None:
    body = json_response(200, openai_completion()).body
    reply = raw_response(200, body, "application/json; charset=utf-8")

    assert serve(FakeTransport(reply))["choices"][0]["text"] == "Hello!"


# --- unusable 2xx replies -----------------------------------------------------------------------


def test_non_json_200_is_an_invalid_reply() -> None:
    error = failure(raw_response(200, b"<html>Welcome to nginx</html>", "text/html"))
    assert (error.status_code, error.code, error.transient) == (
        502,
        "invalid_upstream_response",
        False,
    )
    assert error.is_gateway_error is True


def test_truncated_json_is_an_invalid_reply() -> None:
    body = json_response(200, openai_completion()).body[:40]
    error = failure(raw_response(200, body, "application/json"))
    assert error.code == "invalid_upstream_response"


def test_json_array_is_an_invalid_reply() -> None:
    assert failure(json_response(200, [1, 2])).code == "invalid_upstream_response"


@pytest.mark.parametrize(
    "reply",
    [
        {"id": "cmpl-1"},
        {"choices": "nope"},
        {"choices": ["text"]},
        {"choices": [{"text": 42}]},
    ],
)
def test_reply_without_usable_choices_is_an_invalid_reply(reply: dict[str, Any]) -> None:
    assert failure(json_response(200, reply)).code == "invalid_upstream_response"


# --- error replies ------------------------------------------------------------------------------


def test_error_body_is_mapped_to_a_provider_error() -> None:
    error = failure(
        openai_error(404, "The model `gpt-9` does not exist", code="model_not_found", param="model")
    )
    assert (error.status_code, error.code, error.param) == (404, "model_not_found", "model")
    assert error.message == "The model `gpt-9` does not exist"
    assert error.transient is False
    assert error.is_gateway_error is False


def test_rate_limit_is_transient_with_retry_after() -> None:
    error = failure(
        openai_error(429, "Rate limit reached", error_type="requests", headers={"retry-after": "2"})
    )
    assert error.transient is True
    assert error.retry_after == 2.0


def test_api_key_never_appears_in_the_error() -> None:
    error = failure(
        openai_error(401, f"Incorrect API key provided: {OPENAI_KEY}.", code="invalid_api_key")
    )
    assert OPENAI_KEY not in error.message
    assert OPENAI_KEY not in str(error)
    assert error.code == "invalid_api_key"


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("timeout", "upstream_timeout"),
        ("connect", "upstream_unreachable"),
        ("protocol", "upstream_protocol_error"),
    ],
)
def test_transport_failure_becomes_a_transient_provider_error(kind: str, code: str) -> None:
    error = failure(TransportError(kind, "no answer"))
    assert error.code == code
    assert error.transient is True
