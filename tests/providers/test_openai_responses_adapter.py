from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from openai.types.responses import Response, ResponseFunctionToolCall, ResponseOutputMessage

from harness.upstream import UPSTREAM_OPENAI_KEY, reply_text
from providers.base import Credentials, ProviderError, Target
from providers.openai_responses import OpenAIResponses
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

MODEL = "gpt-4.1-mini"
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}


def openai_response(text: str = "Hello!", **overrides: Any) -> dict[str, Any]:
    """A response exactly as api.openai.com returns it (fields that are null left out)."""
    reply: dict[str, Any] = {
        "id": "resp_67ccd2bed1ec8190",
        "object": "response",
        "created_at": 1741476542,
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": "gpt-4.1-mini-2025-04-14",
        "output": [
            {
                "type": "message",
                "id": "msg_67ccd2bf17f0",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": 36,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 87,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 123,
        },
        "user": None,
        "metadata": {},
    }
    reply.update(overrides)
    return reply


def serve(
    transport: FakeTransport,
    params: dict[str, Any] | None = None,
    *,
    credentials: Credentials = OPENAI,
    model: str = MODEL,
) -> dict[str, Any]:
    params = {"input": "Say hi"} if params is None else params
    return asyncio.run(OpenAIResponses().serve(transport, credentials, model, params, TIMEOUTS))


def served(reply: dict[str, Any], model: str = MODEL) -> tuple[Response, dict[str, Any]]:
    """The result for ``reply`` parsed by the official SDK, as proof that it parses, and raw."""
    result = serve(FakeTransport(json_response(200, reply)), model=model)
    return Response.model_validate(result), result


def failure(reply: HttpResponse | TransportError) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        serve(FakeTransport(reply))
    return caught.value


# --- the request --------------------------------------------------------------------------------


def test_posts_params_and_model_to_the_responses_url() -> None:
    transport = FakeTransport(json_response(200, openai_response()))

    serve(transport, {"input": "Say hi", "instructions": "Be brief.", "max_output_tokens": 50})

    [request] = transport.requests
    assert request.url == "https://api.openai.com/v1/responses"
    assert request.headers == {
        "Authorization": f"Bearer {OPENAI_KEY}",
        "Content-Type": "application/json",
    }
    assert request.json() == {
        "input": "Say hi",
        "instructions": "Be brief.",
        "max_output_tokens": 50,
        "model": MODEL,
    }
    assert request.timeouts == TIMEOUTS


def test_keyless_server_behind_a_trailing_slash_gets_no_authorization() -> None:
    transport = FakeTransport(json_response(200, openai_response()))

    serve(transport, credentials=Credentials("vllm", "openai", "http://127.0.0.1:8000/v1/", ""))

    assert transport.requests[0].url == "http://127.0.0.1:8000/v1/responses"
    assert "Authorization" not in transport.requests[0].headers


def test_gateway_fields_and_nulls_are_dropped_and_tools_and_text_pass_whole() -> None:
    transport = FakeTransport(json_response(200, openai_response()))
    text = {"format": {"type": "json_schema", "name": "city", "schema": {"type": "object"}}}
    params = {
        "model": "openai/gpt-4.1-mini",
        "fallbacks": ["openai/gpt-4o-mini"],
        "stream": False,
        "input": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "text": text,
        "previous_response_id": None,
    }

    serve(transport, params)

    assert transport.requests[0].json() == {
        "input": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "text": text,
        "model": MODEL,
    }


def test_nothing_a_responses_request_says_is_refused() -> None:
    assert OpenAIResponses().refusal({"input": "x", "tools": [WEATHER_TOOL]}) is None


# --- a successful reply -------------------------------------------------------------------------


def test_openai_reply_is_kept_as_the_sdk_response() -> None:
    response, _ = served(openai_response("Hi there"))

    assert (response.id, response.created_at) == ("resp_67ccd2bed1ec8190", 1741476542)
    assert response.model == "gpt-4.1-mini-2025-04-14"
    assert (response.status, response.output_text) == ("completed", "Hi there")
    assert (response.temperature, response.top_p, response.truncation) == (1.0, 1.0, "disabled")
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.total_tokens) == (36, 123)
    # Required by the SDK, absent from older OpenAI replies: counted as none.
    assert response.usage.input_tokens_details.cache_write_tokens == 0


def test_sparse_compatible_server_reply_is_completed() -> None:
    sparse = {"output": [{"type": "message", "content": [{"type": "output_text", "text": "ok"}]}]}

    response, result = served(sparse, model="llama3")

    assert response.id.startswith("resp_") and len(response.id) > len("resp_")
    assert (response.object, response.model, response.status) == ("response", "llama3", "completed")
    assert isinstance(response.created_at, int | float) and response.created_at > 0
    assert (response.parallel_tool_calls, response.tool_choice, response.tools) == (
        True,
        "auto",
        [],
    )
    [message] = response.output
    assert isinstance(message, ResponseOutputMessage)
    assert message.id.startswith("msg_") and message.role == "assistant"
    assert response.output_text == "ok"
    assert "usage" not in result


def test_a_function_call_is_kept_and_its_missing_ids_filled() -> None:
    calls = [
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
            "status": "completed",
        },
        {"type": "function_call", "name": "get_weather", "arguments": {"city": "Rome"}},
    ]

    response, _ = served(openai_response(output=calls, tools=[WEATHER_TOOL]))

    first, second = response.output
    assert isinstance(first, ResponseFunctionToolCall)
    assert isinstance(second, ResponseFunctionToolCall)
    assert (first.id, first.call_id, first.status) == ("fc_1", "call_1", "completed")
    assert json.loads(first.arguments) == {"city": "Paris"}
    assert second.call_id.startswith("call_")
    assert json.loads(second.arguments) == {"city": "Rome"}
    assert [tool.type for tool in response.tools] == ["function"]


def test_reasoning_items_and_usage_details_are_kept() -> None:
    reasoning = {
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "Thought briefly."}],
        "content": [{"type": "reasoning_text", "text": "The user greets me."}],
    }
    usage = {
        "input_tokens": 5,
        "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 12},
    }
    reply = openai_response(output=[reasoning, *openai_response()["output"]], usage=usage)

    response, _ = served(reply)

    item = response.output[0]
    assert item.type == "reasoning"
    assert item.id.startswith("rs_")
    assert [s.text for s in item.summary] == ["Thought briefly."]
    assert item.content is not None and item.content[0].text == "The user greets me."
    assert response.usage is not None
    assert response.usage.total_tokens == 25
    assert response.usage.output_tokens_details.reasoning_tokens == 12
    assert response.usage.input_tokens_details.cached_tokens == 0


def test_an_incomplete_response_keeps_its_reason_and_a_refusal_its_text() -> None:
    message = {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "status": "incomplete",
        "content": [{"type": "refusal", "refusal": "I can't help with that."}],
    }
    reply = openai_response(
        output=[message], status="incomplete", incomplete_details={"reason": "max_output_tokens"}
    )

    response, _ = served(reply)

    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    [item] = response.output
    assert isinstance(item, ResponseOutputMessage)
    assert item.content[0].type == "refusal"


def test_values_the_sdk_would_reject_are_replaced_or_dropped() -> None:
    reply = openai_response(
        status="done",
        tool_choice="sometimes",
        parallel_tool_calls="yes",
        output=[
            {"type": "message", "role": "model", "status": "ok", "content": "plain text"},
            {"type": "thinking_trace", "steps": []},
        ],
        truncation="maybe",
        metadata={"n": 1},
        error={"code": "teapot_error", "message": "failed"},
        usage={"input_tokens": "5", "output_tokens": 1},
    )

    response, result = served(reply)

    assert (response.status, response.tool_choice, response.parallel_tool_calls) == (
        "completed",
        "auto",
        True,
    )
    assert response.output_text == "plain text"
    assert len(response.output) == 1
    assert response.truncation is None and response.metadata is None and response.usage is None
    assert response.error is not None and response.error.code == "server_error"
    assert "thinking_trace" not in json.dumps(result)


@pytest.mark.parametrize(
    "reply",
    [
        {"id": "resp_1"},
        {"output": "text"},
        {"output": ["text"]},
        {"output": [{"type": "function_call", "arguments": "{}"}]},
        {"choices": [{"text": "a completion, not a response"}]},
    ],
)
def test_reply_without_usable_output_is_an_invalid_reply(reply: dict[str, Any]) -> None:
    assert failure(json_response(200, reply)).code == "invalid_upstream_response"


def test_non_json_200_is_an_invalid_reply() -> None:
    error = failure(raw_response(200, b"data: {}\n\n", "text/event-stream"))
    assert (error.status_code, error.code, error.transient) == (
        502,
        "invalid_upstream_response",
        False,
    )


def test_an_api_key_echoed_in_a_reply_never_reaches_the_result() -> None:
    reply = openai_response(f"your key is {OPENAI_KEY}", instructions=OPENAI_KEY)

    outcome = asyncio.run(
        route_request(
            [Target("openai", MODEL)],
            {"input": "Say hi"},
            transport=FakeTransport(json_response(200, reply)),
            credentials={"openai": OPENAI},
            adapters={"openai": OpenAIResponses()},
            policy=RetryPolicy(retries=0),
            timeouts=TIMEOUTS,
        )
    )

    assert outcome.result is not None
    assert OPENAI_KEY not in json.dumps(outcome.result)
    assert Response.model_validate(outcome.result).output_text == "your key is [redacted]"


# --- error replies ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limits_and_server_errors_are_transient(status: int) -> None:
    error = failure(openai_error(status, "try later", error_type="server_error"))
    assert (error.status_code, error.transient, error.is_gateway_error) == (status, True, False)


def test_a_bad_request_is_permanent_and_names_the_param() -> None:
    error = failure(openai_error(400, "Unknown tool type", code="invalid_value", param="tools"))
    assert (error.status_code, error.code, error.param, error.transient) == (
        400,
        "invalid_value",
        "tools",
        False,
    )


def test_api_key_never_appears_in_the_error() -> None:
    error = failure(openai_error(401, f"Incorrect API key provided: {OPENAI_KEY}."))
    assert OPENAI_KEY not in error.message and OPENAI_KEY not in str(error)


def test_transport_failure_becomes_a_transient_provider_error() -> None:
    error = failure(TransportError("connect", "refused"))
    assert (error.code, error.transient) == ("upstream_unreachable", True)


# --- against the harness's fake upstream --------------------------------------------------------


def test_the_fake_upstreams_answer_parses_as_the_sdk_response() -> None:
    params = {"input": [{"role": "user", "content": "Say hi"}], "stream": True}

    result, calls = serve_from_fake_upstream(OpenAIResponses(), "gpt-fake", params)

    response = Response.model_validate(result)
    assert (response.model, response.output_text) == ("gpt-fake", reply_text("Say hi"))
    [call] = calls
    assert (call.path, call.prompts, call.status) == ("/v1/responses", ("Say hi",), 200)
    assert UPSTREAM_OPENAI_KEY not in json.dumps(result)
