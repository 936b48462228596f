from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from openai.types.chat import ChatCompletion

from harness.upstream import UPSTREAM_OPENAI_KEY, reply_text
from providers.base import Credentials, ProviderError, Target
from providers.openai_chat import OpenAIChatCompletions
from providers.routing import RetryPolicy, route_request
from providers.transport import HttpResponse, TransportError
from tests.providers.fakes import (
    OPENAI,
    OPENAI_KEY,
    TIMEOUTS,
    FakeTransport,
    json_response,
    openai_error,
    raw_response,
    serve_from_fake_upstream,
)

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Say hi"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
}


def chat_completion(content: str | None = "Hello!", **overrides: Any) -> dict[str, Any]:
    """A chat completion exactly as api.openai.com returns it."""
    reply: dict[str, Any] = {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1764150000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": content,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 3,
            "total_tokens": 12,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": "fp_0ba0d124f1",
    }
    reply.update(overrides)
    return reply


def with_choice(**choice: Any) -> dict[str, Any]:
    return chat_completion(choices=[{"index": 0, "finish_reason": "stop", **choice}])


def serve(
    transport: FakeTransport,
    params: dict[str, Any] | None = None,
    *,
    credentials: Credentials = OPENAI,
    model: str = MODEL,
) -> dict[str, Any]:
    params = {"messages": MESSAGES} if params is None else params
    return asyncio.run(
        OpenAIChatCompletions().serve(transport, credentials, model, params, TIMEOUTS)
    )


def served(reply: dict[str, Any], **params: Any) -> ChatCompletion:
    """The result for ``reply``, parsed by the official SDK as proof that it parses."""
    result = serve(FakeTransport(json_response(200, reply)), {"messages": MESSAGES, **params})
    return ChatCompletion.model_validate(result)


def failure(reply: HttpResponse | TransportError) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        serve(FakeTransport(reply))
    return caught.value


# --- the request --------------------------------------------------------------------------------


def test_posts_params_and_model_to_the_chat_completions_url() -> None:
    transport = FakeTransport(json_response(200, chat_completion()))

    serve(transport, {"messages": MESSAGES, "temperature": 0.2, "n": 2})

    [request] = transport.requests
    assert request.url == "https://api.openai.com/v1/chat/completions"
    assert request.headers == {
        "Authorization": f"Bearer {OPENAI_KEY}",
        "Content-Type": "application/json",
    }
    assert request.json() == {"messages": MESSAGES, "temperature": 0.2, "n": 2, "model": MODEL}
    assert request.timeouts == TIMEOUTS


def test_keyless_server_behind_a_trailing_slash_gets_no_authorization() -> None:
    transport = FakeTransport(json_response(200, chat_completion()))

    serve(transport, credentials=Credentials("ollama", "openai", "http://127.0.0.1/v1/", ""))

    assert transport.requests[0].url == "http://127.0.0.1/v1/chat/completions"
    assert "Authorization" not in transport.requests[0].headers


def test_gateway_fields_and_nulls_are_dropped_and_tools_pass_whole() -> None:
    transport = FakeTransport(json_response(200, chat_completion()))
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "city", "schema": {"type": "object"}, "strict": True},
    }
    params = {
        "model": "openai/gpt-4o-mini",
        "fallbacks": ["anthropic/claude-3-5-haiku-latest"],
        "stream": False,
        "messages": MESSAGES,
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": response_format,
        "seed": None,
        "max_completion_tokens": None,
    }

    serve(transport, params)

    assert transport.requests[0].json() == {
        "messages": MESSAGES,
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": response_format,
        "model": MODEL,
    }


@pytest.mark.parametrize("params", [{"messages": MESSAGES}, {"messages": [], "logprobs": True}])
def test_nothing_a_chat_request_says_is_refused(params: dict[str, Any]) -> None:
    assert OpenAIChatCompletions().refusal(params) is None


# --- a successful reply -------------------------------------------------------------------------


def test_openai_reply_is_kept_as_the_sdk_chat_completion() -> None:
    completion = served(chat_completion("Hi there"))

    assert (completion.id, completion.created) == ("chatcmpl-abc123", 1764150000)
    assert completion.model == "gpt-4o-mini-2024-07-18"
    assert completion.choices[0].message.content == "Hi there"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.system_fingerprint, completion.service_tier) == ("fp_0ba0d124f1", "default")
    assert completion.usage is not None
    assert completion.usage.total_tokens == 12
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 0


def test_sparse_compatible_server_reply_is_completed() -> None:
    sparse = {"choices": [{"message": {"content": "ok"}}, {"message": {"content": None}}]}

    result = serve(FakeTransport(json_response(200, sparse)), model="llama3")

    completion = ChatCompletion.model_validate(result)
    assert completion.id.startswith("chatcmpl-") and len(completion.id) > len("chatcmpl-")
    assert (completion.object, completion.model) == ("chat.completion", "llama3")
    assert isinstance(completion.created, int) and completion.created > 0
    assert [c.index for c in completion.choices] == [0, 1]
    assert [c.message.content for c in completion.choices] == ["ok", None]
    assert [c.message.role for c in completion.choices] == ["assistant", "assistant"]
    assert [c.finish_reason for c in completion.choices] == ["stop", "stop"]
    assert "usage" not in result and "service_tier" not in result


def test_tool_calls_are_kept_and_a_missing_finish_reason_says_tool_calls() -> None:
    calls = [
        {
            "id": "call_abc",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    message = {"role": "assistant", "content": None, "tool_calls": calls}

    completion = served(with_choice(message=message, finish_reason=None), tools=[WEATHER_TOOL])

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert call.type == "function"
    assert (call.id, call.function.name) == ("call_abc", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}


def test_tool_call_arguments_sent_as_an_object_become_json_text_and_get_an_id() -> None:
    calls = [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
    message = {"role": "assistant", "content": "", "tool_calls": calls}

    completion = served(with_choice(message=message, finish_reason="tool_calls"))

    tool_calls = completion.choices[0].message.tool_calls
    assert tool_calls is not None
    [call] = tool_calls
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert json.loads(call.function.arguments) == {"city": "Paris"}


@pytest.mark.parametrize(
    ("upstream", "normalised"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_calls"),
        ("content_filter", "content_filter"),
        ("function_call", "function_call"),
        ("eos", "stop"),
        ("abort", "stop"),
        (None, "stop"),
    ],
)
def test_finish_reason_is_mapped_to_what_the_sdk_accepts(
    upstream: str | None, normalised: str
) -> None:
    message = {"role": "assistant", "content": "x"}

    completion = served(with_choice(message=message, finish_reason=upstream))

    assert completion.choices[0].finish_reason == normalised


def test_logprobs_refusal_and_content_parts_are_read() -> None:
    logprobs = {
        "content": [
            {
                "token": "Hi",
                "logprob": -0.1,
                "bytes": [72, 105],
                "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]}],
            }
        ],
        "refusal": None,
    }
    parts = [{"type": "text", "text": "Hi"}, {"type": "text", "text": " there"}]
    message = {"role": "assistant", "content": parts, "refusal": "I can't help with that."}

    completion = served(with_choice(message=message, logprobs=logprobs))

    choice = completion.choices[0]
    assert choice.message.content == "Hi there"
    assert choice.message.refusal == "I can't help with that."
    assert choice.logprobs is not None and choice.logprobs.content is not None
    assert [(t.token, t.logprob, t.bytes) for t in choice.logprobs.content] == [
        ("Hi", -0.1, [72, 105])
    ]


def test_values_the_sdk_would_reject_are_dropped() -> None:
    message = {
        "role": "model",
        "content": "x",
        "annotations": [{"type": "footnote"}],
        "audio": {"id": "a"},
    }
    reply = chat_completion(
        choices=[
            {
                "index": 0,
                "message": message,
                "logprobs": {"content": [{"token": "x"}]},
                "finish_reason": "stop",
            }
        ],
        service_tier="turbo",
        usage={"prompt_tokens": 1, "completion_tokens": "2"},
    )

    result = serve(FakeTransport(json_response(200, reply)))

    completion = ChatCompletion.model_validate(result)
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].logprobs is None
    assert completion.service_tier is None and completion.usage is None
    assert set(result["choices"][0]["message"]) == {"role", "content", "refusal"}


@pytest.mark.parametrize(
    "reply",
    [
        {"id": "chatcmpl-1"},
        {"choices": "nope"},
        {"choices": ["text"]},
        {"choices": [{"text": "a completion, not a chat"}]},
        {"choices": [{"message": {"content": 42}}]},
        {"choices": [{"message": {"content": None, "tool_calls": [{"id": "call_1"}]}}]},
    ],
)
def test_reply_without_usable_choices_is_an_invalid_reply(reply: dict[str, Any]) -> None:
    assert failure(json_response(200, reply)).code == "invalid_upstream_response"


def test_non_json_200_is_an_invalid_reply() -> None:
    error = failure(raw_response(200, b"<html>Welcome to nginx</html>", "text/html"))
    assert (error.status_code, error.code, error.transient) == (
        502,
        "invalid_upstream_response",
        False,
    )


def test_an_api_key_echoed_in_a_reply_never_reaches_the_result() -> None:
    reply = chat_completion(f"your key is {OPENAI_KEY}", id=f"chatcmpl-{OPENAI_KEY}")

    outcome = asyncio.run(
        route_request(
            [Target("openai", MODEL)],
            {"messages": MESSAGES},
            transport=FakeTransport(json_response(200, reply)),
            credentials={"openai": OPENAI},
            adapters={"openai": OpenAIChatCompletions()},
            policy=RetryPolicy(retries=0),
            timeouts=TIMEOUTS,
        )
    )

    assert outcome.result is not None
    assert OPENAI_KEY not in json.dumps(outcome.result)
    assert ChatCompletion.model_validate(outcome.result).choices[0].message.content == (
        "your key is [redacted]"
    )


# --- error replies ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_rate_limits_and_server_errors_are_transient(status: int) -> None:
    error = failure(openai_error(status, "try later", error_type="server_error"))
    assert (error.status_code, error.transient, error.is_gateway_error) == (status, True, False)


def test_a_bad_request_is_permanent_and_names_the_param() -> None:
    error = failure(
        openai_error(400, "Invalid 'messages[0].role'", code="invalid_value", param="messages")
    )
    assert (error.status_code, error.code, error.param, error.transient) == (
        400,
        "invalid_value",
        "messages",
        False,
    )


def test_api_key_never_appears_in_the_error() -> None:
    error = failure(
        openai_error(401, f"Incorrect API key provided: {OPENAI_KEY}.", code="invalid_api_key")
    )
    assert OPENAI_KEY not in error.message and OPENAI_KEY not in str(error)


def test_transport_failure_becomes_a_transient_provider_error() -> None:
    error = failure(TransportError("timeout", "no answer"))
    assert (error.code, error.transient) == ("upstream_timeout", True)


# --- against the harness's fake upstream --------------------------------------------------------


def test_the_fake_upstreams_answer_parses_as_the_sdk_chat_completion() -> None:
    params = {"messages": [*MESSAGES, {"role": "user", "content": "and again"}], "n": 2}

    result, calls = serve_from_fake_upstream(OpenAIChatCompletions(), "gpt-fake", params)

    completion = ChatCompletion.model_validate(result)
    assert [c.message.content for c in completion.choices] == [reply_text("and again")] * 2
    assert completion.model == "gpt-fake"
    [call] = calls
    assert (call.path, call.prompts) == ("/v1/chat/completions", ("and again",))
    assert call.headers["authorization"] == f"Bearer {UPSTREAM_OPENAI_KEY}"
    assert UPSTREAM_OPENAI_KEY not in json.dumps(result)
