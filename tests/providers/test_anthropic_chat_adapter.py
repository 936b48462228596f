from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from openai.types.chat import ChatCompletion

from providers.anthropic_chat import DEFAULT_MAX_TOKENS, AnthropicChatCompletions
from providers.base import ProviderError
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
HI = [{"role": "user", "content": "Say hi"}]
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ"  # the start of a PNG; never decoded
PDF = "JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoK"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def serve(transport: FakeTransport, params: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(
        AnthropicChatCompletions().serve(transport, ANTHROPIC, MODEL, params, TIMEOUTS)
    )


def sent(**params: Any) -> dict[str, Any]:
    """The Messages request body the adapter sends for these chat completion params."""
    transport = FakeTransport(ok())
    serve(transport, {"messages": HI, **params})
    [request] = transport.requests
    body: dict[str, Any] = request.json()
    return body


def served(reply: dict[str, Any], **params: Any) -> ChatCompletion:
    """The result for one Anthropic reply, parsed as the official SDK parses it."""
    result = serve(FakeTransport(json_response(200, reply)), {"messages": HI, **params})
    return ChatCompletion.model_validate(result)


def failure(*replies: HttpResponse | TransportError, **params: Any) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        serve(FakeTransport(*replies), {"messages": HI, **params})
    return caught.value


def ok(text: str = "Hello!", **fields: Any) -> HttpResponse:
    return json_response(200, anthropic_message(text, **fields))


def with_content(*blocks: dict[str, Any], stop_reason: str = "end_turn") -> dict[str, Any]:
    reply = anthropic_message(stop_reason=stop_reason)
    reply["content"] = list(blocks)
    return reply


def tool_use(call_id: str = "toolu_01A", city: str = "Paris") -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": "get_weather", "input": {"city": city}}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


# --- the request --------------------------------------------------------------------------------


def test_posts_the_conversation_to_the_messages_url_with_a_default_max_tokens() -> None:
    transport = FakeTransport(ok())

    serve(transport, {"messages": HI})

    [request] = transport.requests
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert request.headers == {
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "x-api-key": ANTHROPIC_KEY,
    }
    assert request.json() == {
        "model": MODEL,
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": [text("Say hi")]}],
    }
    assert request.timeouts == TIMEOUTS


def test_system_and_developer_messages_become_the_system_in_order() -> None:
    body = sent(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hi"},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        ]
    )

    assert body["system"] == [text("Be brief."), text("Answer in French.")]
    assert body["messages"] == [{"role": "user", "content": [text("Say hi")]}]


def test_consecutive_messages_of_one_role_are_merged_into_one_turn() -> None:
    body = sent(
        messages=[
            {"role": "user", "content": "Hi."},
            {"role": "user", "content": [{"type": "text", "text": "Still there?"}]},
            {"role": "assistant", "content": "Yes."},
            {"role": "assistant", "content": "How can I help?"},
            {"role": "user", "content": "Say hi"},
        ]
    )

    assert body["messages"] == [
        {"role": "user", "content": [text("Hi."), text("Still there?")]},
        {"role": "assistant", "content": [text("Yes."), text("How can I help?")]},
        {"role": "user", "content": [text("Say hi")]},
    ]


def test_empty_text_is_left_out_and_an_empty_message_adds_no_turn() -> None:
    body = sent(
        messages=[
            {"role": "user", "content": [{"type": "text", "text": ""}, text("Say hi")]},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "Please."},
        ]
    )

    assert body["messages"] == [{"role": "user", "content": [text("Say hi"), text("Please.")]}]


def test_assistant_refusal_part_is_sent_as_its_text() -> None:
    body = sent(
        messages=[
            {"role": "user", "content": "Tell me a secret"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]},
            {"role": "user", "content": "Fine."},
        ]
    )

    assert body["messages"][1] == {"role": "assistant", "content": [text("I can't.")]}


def test_a_data_url_image_becomes_a_base64_image_block() -> None:
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}

    body = sent(messages=[{"role": "user", "content": [text("What is this?"), image]}])

    assert body["messages"][0]["content"] == [
        text("What is this?"),
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
    ]


def test_an_https_image_becomes_a_url_image_block_and_its_detail_is_dropped() -> None:
    url = "https://example.com/cat.jpg"
    image = {"type": "image_url", "image_url": {"url": url, "detail": "high"}}

    body = sent(messages=[{"role": "user", "content": [image]}])

    assert body["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "url", "url": url}}
    ]


def test_a_pdf_file_becomes_a_document_block() -> None:
    file = {
        "type": "file",
        "file": {"filename": "report.pdf", "file_data": f"data:application/pdf;base64,{PDF}"},
    }

    body = sent(messages=[{"role": "user", "content": [file, text("Summarise it.")]}])

    assert body["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
        },
        text("Summarise it."),
    ]


def test_function_tools_become_anthropic_tools() -> None:
    bare = {"type": "function", "function": {"name": "now"}}

    body = sent(tools=[WEATHER, bare])

    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "The weather in a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in body


@pytest.mark.parametrize(
    ("tool_choice", "translated"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "tool", "name": "get_weather"},
        ),
    ],
)
def test_tool_choice_is_translated(tool_choice: object, translated: dict[str, Any]) -> None:
    assert sent(tools=[WEATHER], tool_choice=tool_choice)["tool_choice"] == translated


@pytest.mark.parametrize(
    ("tool_choice", "translated"),
    [
        (None, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", {"type": "any", "disable_parallel_tool_use": True}),
        ("none", {"type": "none"}),
    ],
)
def test_parallel_tool_calls_false_disables_parallel_tool_use(
    tool_choice: object, translated: dict[str, Any]
) -> None:
    body = sent(tools=[WEATHER], tool_choice=tool_choice, parallel_tool_calls=False)

    assert body["tool_choice"] == translated


def test_tool_calls_and_tool_results_become_tool_use_and_tool_result_blocks() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    body = sent(
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [call, {**call, "id": "call_2", "function": {"name": "now"}}],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [text("12:00")]},
            {"role": "user", "content": "Thanks, summarise."},
        ],
    )

    assert body["messages"] == [
        {"role": "user", "content": [text("Weather in Paris and Rome?")]},
        {
            "role": "assistant",
            "content": [
                text("Let me check."),
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "call_2", "name": "now", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18 C"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": [text("12:00")]},
                text("Thanks, summarise."),
            ],
        },
    ]


@pytest.mark.parametrize(
    ("stop", "sequences"), [("END", ["END"]), (["END", "\n\nHuman:"], ["END", "\n\nHuman:"])]
)
def test_stop_becomes_stop_sequences(stop: object, sequences: list[str]) -> None:
    assert sent(stop=stop)["stop_sequences"] == sequences


def test_max_completion_tokens_is_preferred_to_max_tokens() -> None:
    assert sent(max_completion_tokens=100, max_tokens=50)["max_tokens"] == 100
    assert sent(max_tokens=50)["max_tokens"] == 50


def test_sampling_parameters_pass_with_temperature_capped_at_one() -> None:
    body = sent(temperature=0.3, top_p=0.9)
    assert (body["temperature"], body["top_p"]) == (0.3, 0.9)
    assert sent(temperature=1.7)["temperature"] == 1.0


def test_user_or_safety_identifier_becomes_the_metadata_user_id() -> None:
    assert sent(user="user-42")["metadata"] == {"user_id": "user-42"}
    assert sent(safety_identifier="hash-42")["metadata"] == {"user_id": "hash-42"}


def test_parameters_that_do_not_change_the_answer_are_not_sent() -> None:
    body = sent(
        messages=[{"role": "user", "content": "Say hi", "name": "ada"}],
        metadata={"team": "search"},
        store=True,
        service_tier="flex",
        seed=7,
        prompt_cache_key="k1",
        stream_options={"include_usage": True},
        logprobs=False,
        logit_bias={},
        frequency_penalty=0,
        presence_penalty=0.0,
        response_format={"type": "text"},
        modalities=["text"],
        n=1,
    )

    assert body == {
        "model": MODEL,
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": [text("Say hi")]}],
    }


# --- the reply ----------------------------------------------------------------------------------


def test_a_text_reply_is_an_sdk_chat_completion() -> None:
    completion = served(anthropic_message("Hi there!", input_tokens=10, output_tokens=4))

    assert completion.id == "chatcmpl-msg_01ABC"
    assert completion.object == "chat.completion"
    assert completion.created > 0
    assert completion.model == "claude-3-5-haiku-20241022"
    [choice] = completion.choices
    assert choice.index == 0
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == "Hi there!"
    assert choice.message.tool_calls is None
    assert completion.usage is not None
    assert completion.usage.model_dump(exclude_none=True) == {
        "prompt_tokens": 10,
        "completion_tokens": 4,
        "total_tokens": 14,
    }


def test_text_blocks_are_joined_and_unknown_blocks_ignored() -> None:
    reply = with_content(text("Hello, "), {"type": "thinking", "thinking": "hm"}, text("world."))

    assert served(reply).choices[0].message.content == "Hello, world."


def test_tool_use_blocks_become_tool_calls_with_no_content() -> None:
    completion = served(
        with_content(
            tool_use("toolu_01A", "Paris"), tool_use("toolu_01B", "Rome"), stop_reason="tool_use"
        ),
        tools=[WEATHER],
    )

    [choice] = completion.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert [call.model_dump() for call in choice.message.tool_calls or []] == [
        {
            "id": "toolu_01A",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {
            "id": "toolu_01B",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
        },
    ]


def test_text_beside_tool_use_is_kept_as_content() -> None:
    completion = served(
        with_content(text("Checking."), tool_use(), stop_reason="tool_use"), tools=[WEATHER]
    )

    message = completion.choices[0].message
    assert message.content == "Checking."
    assert [call.id for call in message.tool_calls or []] == ["toolu_01A"]


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
    ],
)
def test_stop_reason_becomes_finish_reason(stop_reason: str, finish_reason: str) -> None:
    reply = anthropic_message(stop_reason=stop_reason)
    assert served(reply).choices[0].finish_reason == finish_reason


def test_cached_prompt_tokens_count_as_prompt_tokens() -> None:
    reply = anthropic_message(input_tokens=5, output_tokens=3)
    reply["usage"].update(cache_creation_input_tokens=100, cache_read_input_tokens=20)

    usage = served(reply).usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (125, 3, 128)


def test_a_reply_without_id_model_or_usage_still_parses() -> None:
    reply = {"type": "message", "content": [text("Hi")], "stop_reason": "end_turn"}

    completion = served(reply)

    assert completion.id.startswith("chatcmpl-")
    assert completion.model == MODEL
    assert completion.usage is not None
    assert completion.usage.total_tokens == 0


def test_the_api_key_is_sent_in_the_header_only_and_never_returned() -> None:
    transport = FakeTransport(ok())

    result = serve(transport, {"messages": HI})

    assert ANTHROPIC_KEY not in transport.requests[0].body.decode()
    assert ANTHROPIC_KEY not in json.dumps(result)


# --- n ------------------------------------------------------------------------------------------


def test_n_makes_n_identical_calls_and_one_choice_each() -> None:
    transport = FakeTransport(
        ok("one", message_id="msg_1", input_tokens=10, output_tokens=1),
        ok("two", message_id="msg_2", input_tokens=10, output_tokens=2),
        ok("three", message_id="msg_3", input_tokens=10, output_tokens=3),
    )

    completion = ChatCompletion.model_validate(serve(transport, {"messages": HI, "n": 3}))

    assert len({request.body for request in transport.requests}) == 1
    assert "n" not in transport.requests[0].json()
    assert [(c.index, c.message.content) for c in completion.choices] == [
        (0, "one"),
        (1, "two"),
        (2, "three"),
    ]
    assert completion.id == "chatcmpl-msg_1"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (30, 6)
    assert completion.usage.total_tokens == 36


def test_the_n_calls_run_concurrently() -> None:
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

    serve(SlowTransport(ok(), ok(), ok()), {"messages": HI, "n": 3})

    assert peak == 3


def test_one_failing_call_fails_the_whole_completion() -> None:
    error = failure(ok(), anthropic_error(500, "api_error", "Internal error"), n=2)

    assert (error.status_code, error.transient) == (500, True)


def test_the_first_failure_cancels_the_calls_still_running() -> None:
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

    with pytest.raises(ProviderError) as caught:
        serve(transport, {"messages": HI, "n": 2})

    assert caught.value.message == "bad"
    assert cancelled.is_set()


# --- refusals -----------------------------------------------------------------------------------

AUDIO_PART = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{"}}


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"presence_penalty": -1}, "presence_penalty"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format",
        ),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"reasoning_effort": "high"}, "reasoning_effort"),
        ({"verbosity": "low"}, "verbosity"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"tools": [WEATHER, {"type": "custom", "custom": {"name": "c"}}]}, "tools[1]"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "strict": True}}]},
            "tools[0].function.strict",
        ),
        ({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools"}}, "tool_choice"),
        (
            {
                "messages": [
                    *HI,
                    {"role": "assistant", "content": "Hi"},
                    {"role": "user", "content": [AUDIO_PART]},
                ]
            },
            "messages[2].content[0]",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "file", "file": {"file_data": "data:text/csv;base64,YSxi"}}
                        ],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            text("Look"),
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/bmp;base64,Qk0="},
                            },
                        ],
                    }
                ]
            },
            "messages[0].content[1]",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "ftp://x/cat.png"}}],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {"messages": [*HI, {"role": "assistant", "tool_calls": [TOOL_CALL]}]},
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            {"messages": [*HI, {"role": "assistant", "audio": {"id": "audio_1"}}]},
            "messages[1].audio",
        ),
        (
            {"messages": [*HI, {"role": "function", "name": "f", "content": "1"}]},
            "messages[1].role",
        ),
    ],
)
def test_what_anthropic_cannot_honour_is_refused_before_any_call(
    params: dict[str, Any], param: str
) -> None:
    params = {"messages": HI, **params}

    refusal = AnthropicChatCompletions().refusal(params)

    assert refusal is not None
    assert (refusal.param, refusal.status_code, refusal.error_type, refusal.code) == (
        param,
        400,
        "invalid_request_error",
        "unsupported_parameter",
    )
    assert (refusal.transient, refusal.is_gateway_error) == (False, True)
    transport = FakeTransport()
    with pytest.raises(ProviderError) as caught:
        serve(transport, params)
    assert caught.value.param == param
    assert transport.requests == []


def test_a_request_anthropic_can_honour_has_no_refusal() -> None:
    params = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    text("What is this?"),
                    {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.webp"}},
                    {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}"}},
                ],
            },
            {
                "role": "assistant",
                "tool_calls": [{**TOOL_CALL, "function": {"name": "f", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "done"},
        ],
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "n": 4,
        "logprobs": False,
        "frequency_penalty": 0,
        "response_format": {"type": "text"},
        "modalities": ["text"],
        "seed": 1,
        "store": False,
    }

    assert AnthropicChatCompletions().refusal(params) is None


# --- unusable replies and errors ----------------------------------------------------------------


def test_an_anthropic_error_is_relayed_with_its_type_and_status() -> None:
    error = failure(anthropic_error(529, "overloaded_error", "Overloaded"))

    assert (error.status_code, error.error_type, error.message) == (
        529,
        "overloaded_error",
        "Overloaded",
    )
    assert (error.transient, error.is_gateway_error) == (True, False)


def test_an_invalid_request_error_is_permanent() -> None:
    error = failure(anthropic_error(400, "invalid_request_error", "messages: roles must alternate"))

    assert (error.status_code, error.transient) == (400, False)


def test_the_api_key_never_appears_in_an_error() -> None:
    error = failure(
        anthropic_error(401, "authentication_error", f"invalid x-api-key {ANTHROPIC_KEY}")
    )

    assert ANTHROPIC_KEY not in error.message
    assert ANTHROPIC_KEY not in str(error)


def test_a_timeout_is_a_transient_gateway_error() -> None:
    error = failure(TransportError("timeout", "upstream did not answer within 30 s"))

    assert (error.status_code, error.code, error.transient) == (504, "upstream_timeout", True)


@pytest.mark.parametrize(
    "reply",
    [
        raw_response(200, b"OK", "text/plain"),
        raw_response(200, b'{"id": "msg_1", "content": [', "application/json"),
        json_response(200, ["not", "an", "object"]),
        json_response(200, {"id": "msg_1", "type": "message"}),
        json_response(200, with_content({"type": "tool_use", "id": "toolu_1", "name": "f"})),
        json_response(
            200,
            with_content({"type": "tool_use", "name": "f", "input": {}}, stop_reason="tool_use"),
        ),
    ],
)
def test_an_unreadable_reply_is_a_permanent_invalid_reply(reply: HttpResponse) -> None:
    error = failure(reply)

    assert (error.status_code, error.code, error.transient, error.is_gateway_error) == (
        502,
        "invalid_upstream_response",
        False,
        True,
    )
