"""The Responses API schema (jobs/schemas/responses.py): input items checked field by field,
hosted tools' items and tools passed on by their known type, background refused."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.schemas.responses import HOSTED_ITEM_TYPES, HOSTED_TOOL_TYPES, ResponsesRequest
from tests.jobs.schemas.checks import accepted, refused

BODY = {"model": "openai/m", "input": "Say hi"}

ITEMS = [
    {"role": "system", "content": "Be brief."},
    {"role": "developer", "content": "Answer in French."},
    {
        "type": "message",
        "role": "user",
        "content": [
            {"type": "input_text", "text": "What is in these?"},
            {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "high"},
            {"type": "input_image", "file_id": "file-1"},
            {"type": "input_file", "file_id": "file-2"},
            {"type": "input_file", "file_data": "AAAA", "filename": "a.pdf"},
            {"type": "input_file", "file_url": "https://example.com/a.pdf"},
        ],
    },
    {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "status": "completed",
        "content": [
            {"type": "output_text", "text": "A cat.", "annotations": []},
            {"type": "refusal", "refusal": "No more."},
        ],
    },
    {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "Thought."}],
        "encrypted_content": "xyz",
    },
    {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "call_1", "output": "42"},
    {
        "type": "function_call_output",
        "call_id": "call_2",
        "output": [{"type": "input_text", "text": "42"}],
    },
    {"type": "item_reference", "id": "msg_0"},
    {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"query": "q"}},
    {"type": "mcp_approval_response", "approval_request_id": "a", "approve": True},
]

EVERY_PARAMETER = {
    "model": "openai/m",
    "input": ITEMS,
    "fallbacks": ["openai/other"],
    "stream": False,
    "instructions": "Be brief.",
    "tools": [
        {
            "type": "function",
            "name": "get_weather",
            "parameters": {"type": "object"},
            "strict": True,
        },
        {"type": "web_search_preview", "search_context_size": "low"},
        {"type": "file_search", "vector_store_ids": ["vs_1"]},
        {"type": "mcp", "server_label": "s", "server_url": "https://example.com"},
    ],
    "tool_choice": {"type": "function", "name": "get_weather"},
    "parallel_tool_calls": True,
    "text": {
        "format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}},
        "verbosity": "low",
    },
    "reasoning": {"effort": "high", "summary": "auto"},
    "max_output_tokens": 200,
    "max_tool_calls": 3,
    "temperature": 0.2,
    "top_p": 1,
    "top_logprobs": 3,
    "metadata": {"team": "search"},
    "user": "u-1",
    "truncation": "auto",
    "previous_response_id": "resp_1",
    "include": ["reasoning.encrypted_content"],
    "store": False,
    "service_tier": "flex",
    "prompt_cache_key": "k",
    "safety_identifier": "s",
    "background": False,
}


@pytest.mark.parametrize(
    "body",
    [
        BODY,
        EVERY_PARAMETER,
        {**BODY, "tool_choice": "auto", "text": {"format": {"type": "text"}}},
        {
            **BODY,
            "tool_choice": {"type": "file_search"},
            "text": {"format": {"type": "json_object"}},
        },
        {**BODY, "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []}},
        {**BODY, "input": [{"role": "user", "content": "hi"}], "background": None},
    ],
    ids=["minimal", "every parameter", "choices", "hosted choice", "allowed tools", "easy"],
)
def test_a_valid_body_is_accepted_as_sent(body: dict[str, Any]) -> None:
    accepted(ResponsesRequest, body)


@pytest.mark.parametrize("kind", HOSTED_ITEM_TYPES)
def test_a_hosted_tools_item_of_a_known_type_is_passed_on_as_sent(kind: str) -> None:
    item = {"type": kind, "id": "x_1", "anything": {"as": ["sent"]}}
    accepted(ResponsesRequest, {**BODY, "input": [item]})


@pytest.mark.parametrize("kind", HOSTED_TOOL_TYPES)
def test_a_hosted_tool_of_a_known_type_is_passed_on_as_sent(kind: str) -> None:
    accepted(ResponsesRequest, {**BODY, "tools": [{"type": kind, "option": 1}]})


def _input(*items: Any) -> dict[str, Any]:
    return {**BODY, "input": [{"role": "user", "content": "hi"}, *items]}


BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"model": "openai/m"}, "input", "This field is required."),
    ({**BODY, "input": 5}, "input", "Must be a string or an array of input items."),
    ({**BODY, "input": []}, "input", "Must not be empty."),
    (_input("hi"), "input[1]", "Must be an object."),
    (_input({"type": "video"}), "input[1].type", "an item of a known type"),
    (_input({"content": "x"}), "input[1].type", "an item of a known type"),
    (_input({"role": "tool", "content": "x"}), "input[1].role", "Must be 'user'"),
    (_input({"role": "user"}), "input[1].content", "This field is required."),
    (
        _input({"role": "user", "content": [{"type": "text", "text": "x"}]}),
        "input[1].content[0].type",
        "Must be 'input_text'",
    ),
    (
        _input({"role": "user", "content": [{"type": "input_text"}]}),
        "input[1].content[0].text",
        "required",
    ),
    (
        _input({"role": "user", "content": [{"type": "input_image", "detail": "low"}]}),
        "input[1].content[0].image_url",
        "Must give image_url or file_id.",
    ),
    (
        _input({"role": "user", "content": [{"type": "input_file", "filename": "a"}]}),
        "input[1].content[0].file_id",
        "Must give file_id, file_data or file_url.",
    ),
    (
        _input({"type": "message", "role": "assistant", "content": "x", "status": "done"}),
        "input[1].status",
        "Must be 'in_progress', 'completed' or 'incomplete'.",
    ),
    (
        _input({"type": "function_call", "call_id": "c", "name": "f"}),
        "input[1].arguments",
        "required",
    ),
    (
        _input({"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}),
        "input[1].arguments",
        "Must be a string.",
    ),
    (_input({"type": "function_call_output", "output": "x"}), "input[1].call_id", "required"),
    (
        _input({"type": "function_call_output", "call_id": "c", "output": 1}),
        "input[1].output",
        "Must be a string or an array of input parts.",
    ),
    (
        _input({"type": "reasoning", "id": "r", "summary": [{"text": "x"}]}),
        "input[1].summary[0].type",
        "required",
    ),
    (_input({"type": "item_reference"}), "input[1].id", "This field is required."),
    (_input({"type": "item_reference", "id": "x", "extra": 1}), "input[1].extra", "Unrecognized"),
    ({**BODY, "instructions": ["a"]}, "instructions", "Must be a string."),
    ({**BODY, "tools": [{"type": "shopping"}]}, "tools[0].type", "Must be a function or one of"),
    ({**BODY, "tools": [{"name": "f"}]}, "tools[0].type", "Must be a function or one of"),
    ({**BODY, "tools": ["f"]}, "tools[0]", "Must be an object."),
    ({**BODY, "tools": [{"type": "function", "name": "a b"}]}, "tools[0].name", "Must be 1 to 64"),
    # A chat completions tool: the name belongs at the top of a Responses tool.
    (
        {**BODY, "tools": [{"type": "function", "function": {"name": "f"}}]},
        "tools[0].name",
        "This field is required.",
    ),
    (
        {**BODY, "tools": [{"type": "function", "name": "f", "function": {}}]},
        "tools[0].function",
        "Unrecognized",
    ),
    ({**BODY, "tool_choice": "any"}, "tool_choice", "Must be 'none', 'auto' or 'required'."),
    ({**BODY, "tool_choice": {"type": "function"}}, "tool_choice.name", "required"),
    ({**BODY, "tool_choice": {"type": "shopping"}}, "tool_choice.type", "Must be"),
    ({**BODY, "tool_choice": 3}, "tool_choice", "or an object naming a tool"),
    ({**BODY, "text": {"format": {"type": "yaml"}}}, "text.format.type", "Must be 'text'"),
    (
        {**BODY, "text": {"format": {"type": "json_schema", "name": "a"}}},
        "text.format.schema",
        "This field is required.",
    ),
    ({**BODY, "text": {"verbosity": "chatty"}}, "text.verbosity", "Must be 'low'"),
    ({**BODY, "reasoning": {"effort": "extreme"}}, "reasoning.effort", "Must be 'none'"),
    ({**BODY, "reasoning": {"summary": "long"}}, "reasoning.summary", "Must be 'auto'"),
    ({**BODY, "max_output_tokens": 0}, "max_output_tokens", "greater than or equal to 1."),
    ({**BODY, "max_output_tokens": 16.0}, "max_output_tokens", "Must be an integer."),
    ({**BODY, "temperature": 3}, "temperature", "less than or equal to 2."),
    ({**BODY, "top_p": 2}, "top_p", "less than or equal to 1."),
    ({**BODY, "top_logprobs": 21}, "top_logprobs", "less than or equal to 20."),
    ({**BODY, "metadata": {"k": ["v"]}}, "metadata", "Must be a string."),
    ({**BODY, "truncation": "on"}, "truncation", "Must be 'auto' or 'disabled'."),
    ({**BODY, "include": "x"}, "include", "Must be an array."),
    ({**BODY, "include": [1]}, "include[0]", "Must be a string."),
    ({**BODY, "previous_response_id": 1}, "previous_response_id", "Must be a string."),
    ({**BODY, "parallel_tool_calls": "no"}, "parallel_tool_calls", "Must be a boolean"),
    ({**BODY, "service_tier": "gold"}, "service_tier", "Must be 'auto'"),
    ({**BODY, "stream_options": {}}, "stream_options", "Only allowed when stream is true."),
]


@pytest.mark.parametrize(
    ("body", "param", "message"), BAD, ids=[f"{row[1]}-{i}" for i, row in enumerate(BAD)]
)
def test_a_bad_body_is_refused_naming_the_param(
    body: dict[str, Any], param: str, message: str
) -> None:
    code = "unknown_parameter" if message == "Unrecognized" else "invalid_parameter"
    error = refused(ResponsesRequest, body, param, code)
    assert message in error.message


def test_background_true_is_refused_the_gateway_runs_every_job_in_the_background() -> None:
    error = refused(
        ResponsesRequest, {**BODY, "background": True}, "background", "unsupported_parameter"
    )
    assert "background" in error.message
    refused(ResponsesRequest, {**BODY, "background": "yes"}, "background")


def test_upstream_calls_are_one() -> None:
    assert accepted(ResponsesRequest, EVERY_PARAMETER).upstream_calls() == 1
