"""What every request body shares (jobs/schemas/base.py): the gateway's own fields, strict
types, unknown fields, and how a refusal names its param."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from jobs.schemas.base import GATEWAY_FIELDS, RequestBody, parse_request
from jobs.schemas.chat import ChatCompletionRequest
from jobs.schemas.completions import CompletionRequest
from jobs.schemas.embeddings import EmbeddingRequest
from jobs.schemas.fields import JsonObject
from jobs.schemas.responses import ResponsesRequest
from tests.jobs.schemas.checks import accepted, refused

# The smallest valid body of each schema.
MINIMAL: dict[type[RequestBody], dict[str, Any]] = {
    CompletionRequest: {"model": "openai/m", "prompt": "Say hi"},
    ChatCompletionRequest: {"model": "openai/m", "messages": [{"role": "user", "content": "hi"}]},
    ResponsesRequest: {"model": "openai/m", "input": "Say hi"},
    EmbeddingRequest: {"model": "openai/m", "input": "Say hi"},
}
SCHEMAS = list(MINIMAL)
SCHEMA_IDS = [schema.__name__ for schema in SCHEMAS]
BODY = MINIMAL[CompletionRequest]


@pytest.mark.parametrize("schema", SCHEMAS, ids=SCHEMA_IDS)
@pytest.mark.parametrize("body", [None, [], "text", 3, [BODY]])
def test_a_body_that_is_not_a_json_object_is_invalid_body(
    schema: type[RequestBody], body: Any
) -> None:
    error = refused(schema, body, None, code="invalid_body")
    assert error.message == "Request body must be a JSON object."


@pytest.mark.parametrize("schema", SCHEMAS, ids=SCHEMA_IDS)
def test_an_unknown_field_is_refused_naming_it(schema: type[RequestBody]) -> None:
    error = refused(schema, {**MINIMAL[schema], "colour": "red"}, "colour", "unknown_parameter")
    assert error.message == "Unrecognized request argument: colour."


def test_unknown_fields_come_before_any_other_error_the_first_by_name() -> None:
    body = {**BODY, "zeta": 1, "temperature": 9, "alpha": 2}
    refused(CompletionRequest, body, "alpha", "unknown_parameter")


def test_an_unknown_nested_field_is_named_by_its_path() -> None:
    body = {"model": "openai/m", "messages": [{"role": "user", "content": "hi", "mood": "calm"}]}
    error = refused(ChatCompletionRequest, body, "messages[0].mood", "unknown_parameter")
    assert error.message == "Unrecognized request argument: messages[0].mood."


@pytest.mark.parametrize("schema", SCHEMAS, ids=SCHEMA_IDS)
def test_stream_true_is_refused_for_every_schema(schema: type[RequestBody]) -> None:
    error = refused(
        schema, {**MINIMAL[schema], "stream": True}, "stream", "streaming_not_supported"
    )
    assert "Streaming is not supported" in error.message


@pytest.mark.parametrize("schema", SCHEMAS, ids=SCHEMA_IDS)
@pytest.mark.parametrize("stream", [False, None])
def test_stream_false_or_null_is_accepted(schema: type[RequestBody], stream: bool | None) -> None:
    assert accepted(schema, {**MINIMAL[schema], "stream": stream}).stream is stream


def test_the_gateway_fields_are_the_base_fields() -> None:
    assert set(RequestBody.model_fields) == GATEWAY_FIELDS == {"model", "fallbacks", "stream"}


@pytest.mark.parametrize(
    "model", ["openai/gpt\ntest", "openai/gpt\x1btest", "openai/gpt\u2028test", "openai/x\x85"]
)
def test_a_model_with_unprintable_characters_is_refused(model: str) -> None:
    refused(CompletionRequest, {**BODY, "model": model}, "model", "invalid_characters")


def test_a_model_is_read_without_surrounding_spaces() -> None:
    assert parse_request(CompletionRequest, {**BODY, "model": "  openai/m "}).model == "openai/m"


@pytest.mark.parametrize("model", ["", "   "])
def test_a_blank_model_is_refused_as_invalid_model(model: str) -> None:
    refused(CompletionRequest, {**BODY, "model": model}, "model", "invalid_model")


def test_a_model_of_more_than_300_characters_is_refused() -> None:
    accepted(CompletionRequest, {**BODY, "model": "a" * 300})
    error = refused(CompletionRequest, {**BODY, "model": "a" * 301}, "model")
    assert error.message == "model: Must hold at most 300 characters."


@pytest.mark.parametrize("model", [42, None, ["openai/m"], {"name": "openai/m"}])
def test_a_model_that_is_not_a_string_is_refused(model: Any) -> None:
    error = refused(CompletionRequest, {**BODY, "model": model}, "model")
    assert error.message == "model: Must be a string."


def test_a_missing_model_is_refused_naming_it() -> None:
    error = refused(CompletionRequest, {"prompt": "x"}, "model")
    assert error.message == "model: This field is required."


def test_fallbacks_are_model_names_each_checked_and_named_by_index() -> None:
    parsed = accepted(CompletionRequest, {**BODY, "fallbacks": ["openai/a", "anthropic/b"]})
    assert parsed.fallbacks == ["openai/a", "anthropic/b"]
    assert accepted(CompletionRequest, {**BODY, "fallbacks": None}).fallbacks is None
    body = {**BODY, "fallbacks": ["openai/a", "openai/\nb"]}
    refused(CompletionRequest, body, "fallbacks[1]", "invalid_characters")
    refused(
        CompletionRequest, {**BODY, "fallbacks": ["openai/a", " "]}, "fallbacks[1]", "invalid_model"
    )
    refused(CompletionRequest, {**BODY, "fallbacks": ["openai/a", 3]}, "fallbacks[1]")
    refused(CompletionRequest, {**BODY, "fallbacks": "openai/a"}, "fallbacks")


def test_fallbacks_are_read_without_surrounding_spaces() -> None:
    parsed = parse_request(CompletionRequest, {**BODY, "fallbacks": [" openai/a"]})
    assert parsed.fallbacks == ["openai/a"]


# Nothing is converted: every JSON value must already be of its field's type.
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_tokens", "16", "Must be an integer."),
        ("max_tokens", 16.0, "Must be an integer."),
        ("max_tokens", True, "Must be an integer."),
        ("n", 1.5, "Must be an integer."),
        ("temperature", "0.5", "Must be a number."),
        ("temperature", True, "Must be a number."),
        ("echo", 1, "Must be a boolean (true or false)."),
        ("echo", "true", "Must be a boolean (true or false)."),
        ("stream", "true", "Must be a boolean (true or false)."),
        ("stream", 0, "Must be a boolean (true or false)."),
        ("user", 5, "Must be a string."),
        ("suffix", ["!"], "Must be a string."),
        ("logit_bias", [], "Must be an object."),
        ("fallbacks", ("openai/a",), "Must be an array."),
    ],
)
def test_no_value_is_coerced(field: str, value: Any, message: str) -> None:
    error = refused(CompletionRequest, {**BODY, field: value}, field)
    assert error.message == f"{field}: {message}"


def test_an_integer_is_a_number() -> None:
    assert accepted(CompletionRequest, {**BODY, "temperature": 1}).temperature == 1


def test_only_the_first_error_in_the_documented_order_is_reported() -> None:
    body = {"top_p": 5, "temperature": 5, "model": "openai/m", "prompt": "x"}
    error = refused(CompletionRequest, body, "temperature")
    assert error.message == "temperature: Ensure this value is less than or equal to 2."


def test_upstream_calls_is_n_or_one_where_the_schema_has_n() -> None:
    chat = MINIMAL[ChatCompletionRequest]
    assert parse_request(ChatCompletionRequest, chat).upstream_calls() == 1
    assert parse_request(ChatCompletionRequest, {**chat, "n": 3}).upstream_calls() == 3
    assert parse_request(ResponsesRequest, MINIMAL[ResponsesRequest]).upstream_calls() == 1


@pytest.mark.parametrize("schema", SCHEMAS, ids=SCHEMA_IDS)
def test_the_examples_of_each_schema_are_valid_bodies_of_it(schema: type[RequestBody]) -> None:
    examples = schema.model_json_schema()["examples"]
    assert examples
    for example in examples:
        accepted(schema, example)


def _definitions(schema: type[RequestBody], mode: Any) -> dict[str, Any]:
    # As drf-spectacular asks for them (drf_spectacular/contrib/pydantic.py).
    document = schema.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
    definitions: dict[str, Any] = document.get("$defs", {})
    return definitions


@pytest.mark.parametrize("mode", ["validation", "serialization"])
def test_every_nested_object_is_registered_under_its_own_class_name(mode: str) -> None:
    """The API document registers nested objects by name: two schemas must not share one."""
    owners: dict[str, str] = {}
    for schema in SCHEMAS:
        for name in _definitions(schema, mode):
            assert "__" not in name, f"{name}: two classes of that name in {schema.__name__}"
            assert owners.setdefault(name, schema.__name__) == schema.__name__, name
    assert {"ChatUserMessage", "ResponsesMessage", "ChatTool", "ResponsesFunctionTool"} <= set(
        owners
    )


def _subclasses(cls: type[BaseModel]) -> list[type[BaseModel]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def test_every_object_class_of_the_schemas_has_a_name_of_its_own() -> None:
    names = [cls.__name__ for cls in _subclasses(JsonObject) if cls.__module__.startswith("jobs.")]
    assert len(names) == len(set(names)), sorted(names)


def _integer_params(schema: type[RequestBody]) -> list[str]:
    properties = schema.model_json_schema()["properties"]
    return [
        name
        for name, spec in properties.items()
        if "integer" in {one.get("type") for one in [spec, *spec.get("anyOf", [])]}
    ]


@pytest.mark.parametrize("schema", SCHEMAS, ids=SCHEMA_IDS)
def test_every_integer_parameter_refuses_a_huge_json_integer_as_out_of_range(
    schema: type[RequestBody],
) -> None:
    """The parser reads a literal of hundreds of digits as an infinity; it is out of range."""
    params = _integer_params(schema)
    assert params
    for param in params:
        for value, bound in ((float("inf"), "less"), (float("-inf"), "greater")):
            error = refused(schema, {**MINIMAL[schema], param: value}, param)
            assert error.message.startswith(f"{param}: Ensure this value is {bound} than"), param
        error = refused(schema, {**MINIMAL[schema], param: 1.5}, param)
        assert error.message == f"{param}: Must be an integer."
