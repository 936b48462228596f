"""The chat completion schema (jobs/schemas/chat.py): OpenAI's chat completions parameters,
messages told apart by role and content parts by type."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.schemas.chat import ChatCompletionRequest
from tests.jobs.schemas.checks import accepted, refused

USER = {"role": "user", "content": "Say hi"}
BODY = {"model": "openai/m", "messages": [USER]}
TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}

CONVERSATION = [
    {"role": "system", "content": "Be brief.", "name": "rules"},
    {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            {
                "type": "image_url",
                "image_url": {"url": "data:image/png;base64,AA", "detail": "low"},
            },
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
            {"type": "file", "file": {"file_id": "file-1"}},
            {"type": "file", "file": {"file_data": "AAAA", "filename": "a.pdf"}},
        ],
        "name": "ann",
    },
    {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}], "refusal": "No."},
    {"role": "assistant", "content": "Voilà.", "name": "bot", "audio": {"id": "audio_1"}},
    {"role": "function", "name": "f", "content": None},
]

EVERY_PARAMETER = {
    "model": "openai/m",
    "messages": CONVERSATION,
    "fallbacks": ["openai/other"],
    "stream": False,
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                "strict": True,
            },
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": False,
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
    },
    "max_tokens": 100,
    "max_completion_tokens": 100,
    "temperature": 1.5,
    "top_p": 0.5,
    "n": 2,
    "stop": ["\n"],
    "seed": 1,
    "logprobs": True,
    "top_logprobs": 20,
    "presence_penalty": 1,
    "frequency_penalty": -1,
    "logit_bias": {"50256": -100},
    "user": "u-1",
    "metadata": {"team": "search"},
    "reasoning_effort": "low",
    "verbosity": "high",
    "modalities": ["text", "audio"],
    "audio": {"voice": "alloy", "format": "mp3"},
    "prediction": {"type": "content", "content": "draft"},
    "service_tier": "auto",
    "store": True,
    "prompt_cache_key": "k",
    "safety_identifier": "s",
}


@pytest.mark.parametrize(
    "body",
    [
        BODY,
        EVERY_PARAMETER,
        {**BODY, "tool_choice": "required", "response_format": {"type": "json_object"}},
        {**BODY, "tool_choice": "none", "response_format": {"type": "text"}, "stop": "END"},
        {**BODY, "temperature": None, "tools": None, "metadata": None},
    ],
    ids=["minimal", "every parameter", "choices", "other choices", "nulls"],
)
def test_a_valid_body_is_accepted_as_sent(body: dict[str, Any]) -> None:
    accepted(ChatCompletionRequest, body)


def _message(**fields: Any) -> dict[str, Any]:
    return {**BODY, "messages": [USER, fields]}


BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"model": "openai/m"}, "messages", "This field is required."),
    ({**BODY, "messages": []}, "messages", "Must not be empty."),
    ({**BODY, "messages": "hi"}, "messages", "Must be an array."),
    ({**BODY, "messages": ["hi"]}, "messages[0]", "Must be an object."),
    ({**BODY, "messages": [{"content": "hi"}]}, "messages[0].role", "This field is required."),
    ({**BODY, "messages": [{"role": "bot", "content": "x"}]}, "messages[0].role", "Must be"),
    (_message(role="user"), "messages[1].content", "This field is required."),
    (_message(role="user", content=5), "messages[1].content", "a string or an array"),
    (_message(role="user", content=[]), "messages[1].content", "Must not be empty."),
    (_message(role="user", content=["hi"]), "messages[1].content[0]", "Must be an object."),
    (_message(role="user", content=[{"text": "x"}]), "messages[1].content[0].type", "required"),
    (
        _message(role="user", content=[{"type": "video", "video": {}}]),
        "messages[1].content[0].type",
        "Must be 'text', 'image_url', 'input_audio', 'file'",
    ),
    (_message(role="user", content=[{"type": "text"}]), "messages[1].content[0].text", "required"),
    (
        _message(role="user", content=[{"type": "text", "text": 1}]),
        "messages[1].content[0].text",
        "Must be a string.",
    ),
    (
        _message(role="user", content=[{"type": "image_url", "image_url": "https://x"}]),
        "messages[1].content[0].image_url",
        "Must be an object.",
    ),
    (
        _message(role="user", content=[{"type": "image_url", "image_url": {"detail": "low"}}]),
        "messages[1].content[0].image_url.url",
        "This field is required.",
    ),
    (
        _message(
            role="user", content=[{"type": "image_url", "image_url": {"url": "u", "detail": "max"}}]
        ),
        "messages[1].content[0].image_url.detail",
        "Must be 'auto', 'low' or 'high'.",
    ),
    (
        _message(
            role="user",
            content=[{"type": "input_audio", "input_audio": {"data": "A", "format": "ogg"}}],
        ),
        "messages[1].content[0].input_audio.format",
        "Must be 'wav' or 'mp3'.",
    ),
    (
        _message(role="user", content=[{"type": "file", "file": {"filename": "a.pdf"}}]),
        "messages[1].content[0].file.file_data",
        "Must give file_data or file_id.",
    ),
    (
        _message(role="system", content=[{"type": "image_url", "image_url": {"url": "u"}}]),
        "messages[1].content[0].type",
        "Must be 'text'.",
    ),
    (_message(role="assistant"), "messages[1].content", "unless tool_calls or function_call"),
    (_message(role="assistant", content=None, tool_calls=[]), "messages[1].content", "unless"),
    (
        _message(role="assistant", tool_calls=[{**TOOL_CALL, "type": "custom"}]),
        "messages[1].tool_calls[0].type",
        "Must be 'function'.",
    ),
    (
        _message(
            role="assistant", tool_calls=[{**TOOL_CALL, "function": {"name": "f", "arguments": {}}}]
        ),
        "messages[1].tool_calls[0].function.arguments",
        "Must be a string.",
    ),
    (_message(role="tool", content="42"), "messages[1].tool_call_id", "This field is required."),
    (_message(role="function", content="42"), "messages[1].name", "This field is required."),
    ({**BODY, "tools": [{"type": "function"}]}, "tools[0].function", "This field is required."),
    (
        {**BODY, "tools": [{"type": "function", "function": {"name": "get weather"}}]},
        "tools[0].function.name",
        "Must be 1 to 64 letters, digits, underscores or dashes.",
    ),
    (
        {**BODY, "tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]},
        "tools[0].function.parameters",
        "Must be an object.",
    ),
    ({**BODY, "tool_choice": "any"}, "tool_choice", "Must be 'none', 'auto' or 'required'."),
    ({**BODY, "tool_choice": 1}, "tool_choice", "or an object naming a function"),
    (
        {**BODY, "tool_choice": {"type": "function", "function": {}}},
        "tool_choice.function.name",
        "This field is required.",
    ),
    ({**BODY, "response_format": {"type": "yaml"}}, "response_format.type", "Must be 'text'"),
    (
        {**BODY, "response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
        "response_format.json_schema.name",
        "This field is required.",
    ),
    ({**BODY, "max_tokens": 0}, "max_tokens", "greater than or equal to 1."),
    ({**BODY, "max_completion_tokens": "5"}, "max_completion_tokens", "Must be an integer."),
    ({**BODY, "temperature": 2.01}, "temperature", "less than or equal to 2."),
    ({**BODY, "top_p": -0.5}, "top_p", "greater than or equal to 0."),
    ({**BODY, "n": 129}, "n", "less than or equal to 128."),
    ({**BODY, "stop": ["a", "b", "c", "d", "e"]}, "stop", "Must hold at most 4 items."),
    ({**BODY, "logprobs": 1}, "logprobs", "Must be a boolean (true or false)."),
    ({**BODY, "logprobs": True, "top_logprobs": 21}, "top_logprobs", "less than or equal to 20."),
    ({**BODY, "top_logprobs": 2}, "top_logprobs", "Requires logprobs to be true."),
    ({**BODY, "logprobs": False, "top_logprobs": 2}, "top_logprobs", "Requires logprobs"),
    ({**BODY, "presence_penalty": 3}, "presence_penalty", "less than or equal to 2."),
    ({**BODY, "logit_bias": {"x": 1}}, "logit_bias", "Must be a token id"),
    ({**BODY, "logit_bias": {"1": -101}}, "logit_bias", "greater than or equal to -100."),
    ({**BODY, "user": 1}, "user", "Must be a string."),
    ({**BODY, "metadata": {"k": 1}}, "metadata", "Must be a string."),
    (
        {**BODY, "metadata": {f"k{i}": "v" for i in range(17)}},
        "metadata",
        "Must hold at most 16 items.",
    ),
    ({**BODY, "metadata": {"k": "v" * 513}}, "metadata", "at most 512 characters."),
    ({**BODY, "reasoning_effort": "extreme"}, "reasoning_effort", "Must be 'none'"),
    ({**BODY, "modalities": ["video"]}, "modalities[0]", "Must be 'text' or 'audio'."),
    ({**BODY, "audio": {"voice": "alloy"}}, "audio.format", "This field is required."),
    ({**BODY, "prediction": {"type": "diff", "content": "x"}}, "prediction.type", "Must be"),
    ({**BODY, "service_tier": "gold"}, "service_tier", "Must be 'auto'"),
    ({**BODY, "store": "yes"}, "store", "Must be a boolean"),
    (
        {**BODY, "stream_options": {"include_usage": True}},
        "stream_options",
        "Only allowed when stream is true.",
    ),
    (
        {**BODY, "stream": False, "stream_options": {"include_usage": True}},
        "stream_options",
        "Only allowed when stream is true.",
    ),
]


@pytest.mark.parametrize(
    ("body", "param", "message"), BAD, ids=[f"{row[1]}-{i}" for i, row in enumerate(BAD)]
)
def test_a_bad_body_is_refused_naming_the_param(
    body: dict[str, Any], param: str, message: str
) -> None:
    error = refused(ChatCompletionRequest, body, param)
    assert error.message.startswith(f"{param}: "), error.message
    assert message in error.message


def test_stream_options_with_stream_true_is_refused_for_streaming_first() -> None:
    body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
    refused(ChatCompletionRequest, body, "stream", "streaming_not_supported")


def test_an_unknown_field_of_a_content_part_is_named_by_its_path() -> None:
    part = {"type": "image_url", "image_url": {"url": "u", "size": 3}}
    body = _message(role="user", content=[{"type": "text", "text": "a"}, part])
    refused(
        ChatCompletionRequest, body, "messages[1].content[1].image_url.size", "unknown_parameter"
    )


def test_the_json_schema_field_is_written_schema_as_openai_names_it() -> None:
    body = {
        **BODY,
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema_": {}}},
    }
    refused(ChatCompletionRequest, body, "response_format.json_schema.schema_", "unknown_parameter")


@pytest.mark.parametrize(("n", "calls"), [(None, 1), (1, 1), (5, 5), (128, 128)])
def test_upstream_calls_are_n(n: int | None, calls: int) -> None:
    assert accepted(ChatCompletionRequest, {**BODY, "n": n}).upstream_calls() == calls
