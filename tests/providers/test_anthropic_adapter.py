from __future__ import annotations

import asyncio
from typing import Any

import pytest
from openai.types import Completion

from providers.anthropic import AnthropicCompletions
from providers.base import Credentials, ProviderError
from providers.transport import HttpResponse, TransportError
from tests.providers.fakes import (
    ANTHROPIC,
    ANTHROPIC_KEY,
    TIMEOUTS,
    FakeTransport,
    anthropic_error,
    anthropic_message,
    json_response,
    raw_response,
)

MODEL = "claude-3-5-haiku-latest"


def serve(
    transport: FakeTransport,
    params: dict[str, Any] | None = None,
    *,
    credentials: Credentials = ANTHROPIC,
) -> dict[str, Any]:
    params = {"prompt": "Say hi", "max_tokens": 5} if params is None else params
    return asyncio.run(
        AnthropicCompletions().serve(transport, credentials, MODEL, params, TIMEOUTS)
    )


def failure(
    *replies: HttpResponse | TransportError, params: dict[str, Any] | None = None
) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        serve(FakeTransport(*replies), params)
    return caught.value


def ok(text: str = "Hello!", **fields: Any) -> HttpResponse:
    return json_response(200, anthropic_message(text, **fields))


# --- the request --------------------------------------------------------------------------------


def test_posts_one_user_message_to_the_messages_url() -> None:
    transport = FakeTransport(ok())

    serve(transport, {"prompt": "Say hi", "max_tokens": 5})

    [request] = transport.requests
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert request.headers == {
        "x-api-key": ANTHROPIC_KEY,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }
    assert request.json() == {
        "model": MODEL,
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "Say hi"}],
    }


@pytest.mark.parametrize(
    "base_url",
    ["https://api.anthropic.com/", "https://api.anthropic.com/v1", "https://api.anthropic.com/v1/"],
)
def test_base_url_with_version_or_slash_is_accepted(base_url: str) -> None:
    transport = FakeTransport(ok())

    serve(transport, credentials=Credentials("anthropic", "anthropic", base_url, ANTHROPIC_KEY))

    assert transport.requests[0].url == "https://api.anthropic.com/v1/messages"


def test_max_tokens_defaults_to_the_openai_default() -> None:
    transport = FakeTransport(ok())

    serve(transport, {"prompt": "Say hi"})

    assert transport.requests[0].json()["max_tokens"] == 16


def test_sampling_stop_and_user_are_translated() -> None:
    transport = FakeTransport(ok())

    serve(
        transport,
        {
            "prompt": "p",
            "max_tokens": 9,
            "temperature": 0.3,
            "top_p": 0.9,
            "stop": "END",
            "user": "u-1",
        },
    )

    body = transport.requests[0].json()
    assert body["temperature"] == 0.3
    assert body["top_p"] == 0.9
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "u-1"}


def test_stop_list_becomes_stop_sequences() -> None:
    transport = FakeTransport(ok())

    serve(transport, {"prompt": "p", "stop": ["\n", "###"]})

    assert transport.requests[0].json()["stop_sequences"] == ["\n", "###"]


def test_temperature_above_one_is_clamped_to_one() -> None:
    transport = FakeTransport(ok())

    serve(transport, {"prompt": "p", "temperature": 1.7})

    assert transport.requests[0].json()["temperature"] == 1.0


def test_openai_only_parameters_are_not_sent() -> None:
    transport = FakeTransport(ok())
    params = {
        "prompt": "p",
        "max_tokens": 3,
        "suffix": "s",
        "best_of": 2,
        "logit_bias": {"50256": -100},
        "presence_penalty": 0.5,
        "frequency_penalty": 0.5,
        "seed": 7,
        "logprobs": None,
    }

    serve(transport, params)

    assert set(transport.requests[0].json()) == {"model", "max_tokens", "messages"}


def test_logprobs_are_refused_at_submit() -> None:
    error = AnthropicCompletions().refusal({"prompt": "p", "logprobs": 0})

    assert error is not None
    assert (error.status_code, error.error_type, error.code, error.param) == (
        400,
        "invalid_request_error",
        "unsupported_parameter",
        "logprobs",
    )
    assert error.transient is False
    assert error.is_gateway_error is True


def test_token_id_prompts_are_refused_at_submit() -> None:
    error = AnthropicCompletions().refusal({"prompt": [1, 2, 3]})

    assert error is not None
    assert (error.status_code, error.code, error.param) == (400, "unsupported_parameter", "prompt")


@pytest.mark.parametrize(
    "params",
    [{"prompt": "p"}, {"prompt": ["a", "b"], "logprobs": None, "n": 2}],
)
def test_what_anthropic_can_carry_is_not_refused(params: dict[str, Any]) -> None:
    assert AnthropicCompletions().refusal(params) is None


@pytest.mark.parametrize(
    ("params", "param"),
    [({"prompt": "p", "logprobs": 0}, "logprobs"), ({"prompt": [1, 2, 3]}, "prompt")],
)
def test_a_refused_job_that_reaches_serve_fails_before_any_call(
    params: dict[str, Any], param: str
) -> None:
    transport = FakeTransport()

    with pytest.raises(ProviderError) as caught:
        serve(transport, params)

    assert (caught.value.code, caught.value.param) == ("unsupported_parameter", param)
    assert transport.requests == []


# --- the reply ----------------------------------------------------------------------------------


def test_reply_is_returned_as_the_sdk_completion() -> None:
    result = serve(FakeTransport(ok("Hi there", input_tokens=11, output_tokens=3)))

    completion = Completion.model_validate(result)
    assert completion.id == "cmpl-msg_01ABC"
    assert completion.object == "text_completion"
    assert completion.model == "claude-3-5-haiku-20241022"
    assert completion.choices[0].text == "Hi there"
    assert completion.choices[0].index == 0
    assert completion.choices[0].logprobs is None
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 3)
    assert completion.usage.total_tokens == 14


def test_only_text_blocks_are_concatenated() -> None:
    message = anthropic_message()
    message["content"] = [
        {"type": "thinking", "thinking": "hmm", "signature": "x"},
        {"type": "text", "text": "Hello, "},
        {"type": "text", "text": "world"},
    ]

    result = serve(FakeTransport(json_response(200, message)))

    assert result["choices"][0]["text"] == "Hello, world"


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "stop"),
        ("pause_turn", "stop"),
    ],
)
def test_stop_reason_becomes_finish_reason(stop_reason: str, finish_reason: str) -> None:
    result = serve(FakeTransport(ok(stop_reason=stop_reason)))

    assert result["choices"][0]["finish_reason"] == finish_reason


def test_echo_puts_the_prompt_before_the_text() -> None:
    result = serve(FakeTransport(ok(" there")), {"prompt": "Hello", "echo": True})

    assert result["choices"][0]["text"] == "Hello there"


def test_each_prompt_of_a_list_is_one_call_and_one_choice_in_order() -> None:
    transport = FakeTransport(
        ok("one", message_id="msg_1", input_tokens=2, output_tokens=1),
        ok("two", message_id="msg_2", input_tokens=3, output_tokens=2),
    )

    result = serve(transport, {"prompt": ["first", "second"], "max_tokens": 4})

    assert [r.json()["messages"][0]["content"] for r in transport.requests] == ["first", "second"]
    completion = Completion.model_validate(result)
    assert [(c.index, c.text) for c in completion.choices] == [(0, "one"), (1, "two")]
    assert completion.id == "cmpl-msg_1"
    assert result["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def test_n_makes_n_calls_per_prompt_indexed_like_openai() -> None:
    transport = FakeTransport(*(ok(f"reply {i}") for i in range(4)))

    result = serve(transport, {"prompt": ["a", "b"], "n": 2, "echo": True})

    assert [r.json()["messages"][0]["content"] for r in transport.requests] == ["a", "a", "b", "b"]
    assert [(c["index"], c["text"]) for c in result["choices"]] == [
        (0, "areply 0"),
        (1, "areply 1"),
        (2, "breply 2"),
        (3, "breply 3"),
    ]


def test_calls_for_several_prompts_run_concurrently() -> None:
    in_flight = 0
    peak = 0

    class SlowTransport(FakeTransport):
        async def post(self, url: str, **kwargs: Any) -> HttpResponse:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1
            return await super().post(url, **kwargs)

    serve(SlowTransport(ok(), ok(), ok()), {"prompt": ["a", "b", "c"]})

    assert peak == 3


# --- unusable replies and errors ----------------------------------------------------------------


def test_non_json_200_is_an_invalid_reply() -> None:
    error = failure(raw_response(200, b"OK", "text/plain"))
    assert (error.status_code, error.code, error.transient) == (
        502,
        "invalid_upstream_response",
        False,
    )


def test_truncated_json_is_an_invalid_reply() -> None:
    body = json_response(200, anthropic_message()).body[:30]
    assert failure(raw_response(200, body, "application/json")).code == "invalid_upstream_response"


def test_reply_without_content_is_an_invalid_reply() -> None:
    assert failure(json_response(200, {"id": "msg_1", "type": "message"})).code == (
        "invalid_upstream_response"
    )


def test_anthropic_error_body_is_mapped() -> None:
    error = failure(anthropic_error(529, "overloaded_error", "Overloaded"))
    assert (error.status_code, error.error_type, error.message) == (
        529,
        "overloaded_error",
        "Overloaded",
    )
    assert error.transient is True
    assert error.is_gateway_error is False


def test_invalid_request_is_permanent() -> None:
    error = failure(anthropic_error(400, "invalid_request_error", "max_tokens: must be at least 1"))
    assert error.transient is False
    assert error.code == "invalid_request_error"


def test_api_key_never_appears_in_the_error() -> None:
    error = failure(
        anthropic_error(401, "authentication_error", f"invalid x-api-key {ANTHROPIC_KEY}")
    )
    assert ANTHROPIC_KEY not in error.message
    assert ANTHROPIC_KEY not in str(error)


def test_timeout_becomes_a_transient_provider_error() -> None:
    error = failure(TransportError("timeout", "upstream did not answer within 30 s"))
    assert (error.status_code, error.code, error.transient) == (504, "upstream_timeout", True)


def test_one_failing_prompt_fails_the_whole_completion() -> None:
    error = failure(
        ok(), anthropic_error(500, "api_error", "Internal error"), params={"prompt": ["a", "b"]}
    )
    assert error.status_code == 500


def test_first_failure_cancels_the_calls_still_running() -> None:
    cancelled = asyncio.Event()

    class HangingSecondCall(FakeTransport):
        async def post(self, url: str, **kwargs: Any) -> HttpResponse:
            if self.requests:
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    cancelled.set()
                    raise
            return await super().post(url, **kwargs)

    transport = HangingSecondCall(anthropic_error(400, "invalid_request_error", "bad"))

    with pytest.raises(ProviderError):
        serve(transport, {"prompt": ["a", "b"]})

    assert cancelled.is_set()
