"""The text completion schema (jobs/schemas/completions.py): every rule of OpenAI's legacy
completions parameters, and the gateway's bounds on prompts."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.schemas.completions import CompletionRequest
from tests.jobs.schemas.checks import accepted, from_json, refused

BODY = {"model": "openai/m", "prompt": "x"}

EVERY_PARAMETER = {
    "model": "openai/m",
    "prompt": ["a", "b"],
    "fallbacks": ["anthropic/c"],
    "stream": False,
    "best_of": 2,
    "echo": False,
    "frequency_penalty": 0.5,
    "logit_bias": {"50256": -100},
    "logprobs": 2,
    "max_tokens": 32,
    "n": 2,
    "presence_penalty": -1.5,
    "seed": 7,
    "stop": ["\n", "END"],
    "suffix": "!",
    "temperature": 0.7,
    "top_p": 0.9,
    "user": "u-1",
}


@pytest.mark.parametrize(
    "body",
    [
        BODY,
        EVERY_PARAMETER,
        {**BODY, "prompt": [1, 2, 3]},
        {**BODY, "prompt": [[1, 2], [3]]},
        {**BODY, "prompt": ""},
        {**BODY, "stop": "\n", "suffix": "", "user": ""},
        {**BODY, "temperature": None, "top_p": None, "n": None, "stop": None},
        {
            **BODY,
            "logit_bias": {"2147483647": -100, "0": 100},
            "seed": -(2**63),
            "temperature": 5e-324,
            "max_tokens": 10_000_000,
            "best_of": 20,
            "logprobs": 5,
            "n": 20,
        },
    ],
    ids=[
        "minimal",
        "every parameter",
        "tokens",
        "token lists",
        "empty",
        "blanks",
        "nulls",
        "edges",
    ],
)
def test_a_valid_body_is_accepted_as_sent(body: dict[str, Any]) -> None:
    accepted(CompletionRequest, body)


BAD = [
    ("temperature", 2.5, "temperature", "Ensure this value is less than or equal to 2."),
    ("temperature", -0.1, "temperature", "Ensure this value is greater than or equal to 0."),
    ("top_p", 1.5, "top_p", "less than or equal to 1."),
    ("top_p", -1, "top_p", "greater than or equal to 0."),
    ("n", 0, "n", "greater than or equal to 1."),
    ("n", 129, "n", "less than or equal to 128."),
    ("max_tokens", -1, "max_tokens", "greater than or equal to 0."),
    ("max_tokens", 10_000_001, "max_tokens", "less than or equal to 10000000."),
    ("logprobs", 6, "logprobs", "less than or equal to 5."),
    ("logprobs", -1, "logprobs", "greater than or equal to 0."),
    ("best_of", 21, "best_of", "less than or equal to 20."),
    ("frequency_penalty", 2.1, "frequency_penalty", "less than or equal to 2."),
    ("presence_penalty", -2.1, "presence_penalty", "greater than or equal to -2."),
    ("seed", 2**63, "seed", "less than or equal to 9223372036854775807."),
    ("seed", "1", "seed", "Must be an integer."),
    ("echo", "yes", "echo", "Must be a boolean (true or false)."),
    ("stop", ["a"] * 5, "stop", "Must hold at most 4 items."),
    ("stop", 3, "stop", "Must be a string or an array of at most 4 strings."),
    ("stop", [1], "stop[0]", "Must be a string."),
    ("suffix", 5, "suffix", "Must be a string."),
    ("suffix", "x" * 100_001, "suffix", "Must hold at most 100000 characters."),
    ("user", ["u"], "user", "Must be a string."),
    ("user", "u" * 257, "user", "Must hold at most 256 characters."),
    ("logit_bias", [], "logit_bias", "Must be an object."),
    ("logit_bias", {"abc": 1}, "logit_bias", "Must be a token id"),
    ("logit_bias", {"-1": 1}, "logit_bias", "Must be a token id"),
    ("logit_bias", {"2147483648": 1}, "logit_bias", "Must be a token id"),
    ("logit_bias", {"٣": 1}, "logit_bias", "Must be a token id"),
    ("logit_bias", {"1": 101}, "logit_bias", "less than or equal to 100."),
    ("logit_bias", {"1": "x"}, "logit_bias", "Must be a number."),
    ("logit_bias", {str(i): 1 for i in range(1025)}, "logit_bias", "at most 1024 items."),
    ("prompt", [], "prompt", "Must not be empty."),
    ("prompt", 3, "prompt", "Must be a string, a non-empty array of strings"),
    ("prompt", None, "prompt", "Must be a string, a non-empty array of strings"),
    ("prompt", {"a": 1}, "prompt", "Must be a string, a non-empty array of strings"),
    ("prompt", ["a", 2], "prompt[1]", "Must be a string."),
    ("prompt", [1, "a"], "prompt[1]", "Must be an integer."),
    ("prompt", [1, -1], "prompt[1]", "greater than or equal to 0."),
    ("prompt", [1, 2**31], "prompt[1]", "less than or equal to 2147483647."),
    ("prompt", [[1], []], "prompt[1]", "Must not be empty."),
    ("prompt", [[1], [True]], "prompt[1][0]", "Must be an integer."),
]


@pytest.mark.parametrize(
    ("field", "value", "param", "message"), BAD, ids=[f"{row[0]}-{i}" for i, row in enumerate(BAD)]
)
def test_a_bad_value_is_refused_naming_its_param(
    field: str, value: Any, param: str, message: str
) -> None:
    error = refused(CompletionRequest, {**BODY, field: value}, param)
    assert error.message.startswith(f"{param}: "), error.message
    assert message in error.message


def test_a_missing_prompt_is_refused() -> None:
    error = refused(CompletionRequest, {"model": "openai/m"}, "prompt")
    assert error.message == "prompt: This field is required."


def test_best_of_below_n_is_refused_naming_best_of() -> None:
    error = refused(CompletionRequest, {**BODY, "n": 3, "best_of": 2}, "best_of")
    assert error.message == "best_of: Must be greater than or equal to n."
    accepted(CompletionRequest, {**BODY, "n": 3, "best_of": 3})


def test_best_of_of_zero_is_below_the_default_n() -> None:
    refused(CompletionRequest, {**BODY, "best_of": 0}, "best_of")


@pytest.mark.parametrize(
    "prompt", [["a", "b", "c", "d"], [[1], [2], [3], [4]]], ids=["strings", "token lists"]
)
def test_more_prompts_than_the_gateway_accepts_are_refused(settings: Any, prompt: Any) -> None:
    settings.GATEWAY_MAX_PROMPTS = 3
    error = refused(CompletionRequest, {**BODY, "prompt": prompt}, "prompt")
    assert error.message == "prompt: At most 3 prompts are accepted in one request."
    accepted(CompletionRequest, {**BODY, "prompt": prompt[:3]})


def test_one_array_of_token_ids_is_one_prompt(settings: Any) -> None:
    settings.GATEWAY_MAX_PROMPTS = 1
    accepted(CompletionRequest, {**BODY, "prompt": [1, 2, 3]})


@pytest.mark.parametrize(
    ("prompt", "param"),
    [("x" * 11, "prompt"), (["ok", "x" * 11], "prompt[1]"), ([[1], [1] * 11], "prompt[1]")],
)
def test_a_prompt_longer_than_the_gateway_accepts_is_refused(
    settings: Any, prompt: Any, param: str
) -> None:
    settings.GATEWAY_MAX_PROMPT_CHARS = 10
    error = refused(CompletionRequest, {**BODY, "prompt": prompt}, param)
    assert "at most 10 characters" in error.message


NUMERIC_PARAMS = [
    "best_of",
    "frequency_penalty",
    "logprobs",
    "max_tokens",
    "n",
    "presence_penalty",
    "seed",
    "temperature",
    "top_p",
]
# JSON number literals past every bound, as a client can write them: the gateway's parser reads
# the huge ones as infinities (gateway/http/parsers.py).
HUGE_LITERALS = {
    "400-digit integer": ("9" * 400, "less than or equal to"),
    "negative 400-digit integer": ("-" + "9" * 400, "greater than or equal to"),
    "5000-digit integer": ("1" + "0" * 4999, "less than or equal to"),
    "largest float": ("1.7976931348623157e308", "less than or equal to"),
    "huge exponent": ("1e999", "less than or equal to"),
    "huge negative exponent": ("-1e999", "greater than or equal to"),
}


def test_every_numeric_parameter_is_covered_by_the_huge_number_cases() -> None:
    properties = CompletionRequest.model_json_schema()["properties"]
    numeric = {
        name
        for name, spec in properties.items()
        if {"integer", "number"} & {one.get("type") for one in [spec, *spec.get("anyOf", [])]}
    }
    assert numeric == set(NUMERIC_PARAMS)


@pytest.mark.parametrize("literal", HUGE_LITERALS, ids=list(HUGE_LITERALS))
@pytest.mark.parametrize("param", NUMERIC_PARAMS)
def test_a_huge_or_infinite_number_is_out_of_range_naming_its_param(
    param: str, literal: str
) -> None:
    raw, bound = HUGE_LITERALS[literal]
    body = from_json(f'{{"model": "openai/m", "prompt": "x", "{param}": {raw}}}')
    error = refused(CompletionRequest, body, param)
    assert error.message.startswith(f"{param}: Ensure this value is {bound} ")


@pytest.mark.parametrize("param", ["best_of", "logprobs", "max_tokens", "n", "seed"])
def test_a_huge_python_integer_is_out_of_range_too(param: str) -> None:
    for value in (10**400, -(10**400), 10**5000):
        error = refused(CompletionRequest, {**BODY, param: value}, param)
        assert "equal to" in error.message


@pytest.mark.parametrize("param", ["model", "suffix", "user", "stop", "prompt"])
def test_a_huge_integer_where_a_string_belongs_is_refused(param: str) -> None:
    refused(CompletionRequest, {**BODY, param: 10**5000}, param)


@pytest.mark.parametrize(
    "logit_bias",
    [
        '{"50256": ' + "9" * 400 + "}",
        '{"50256": -' + "9" * 400 + "}",
        '{"50256": 1e999}',
        '{"50256": -1e999}',
        '{"' + "9" * 400 + '": 1}',
    ],
)
def test_a_huge_logit_bias_value_or_token_id_is_refused(logit_bias: str) -> None:
    body = from_json(f'{{"model": "openai/m", "prompt": "x", "logit_bias": {logit_bias}}}')
    refused(CompletionRequest, body, "logit_bias")


@pytest.mark.parametrize(
    ("extra", "calls"),
    [
        ({}, 1),
        ({"n": 3}, 3),
        ({"best_of": 4}, 4),
        ({"n": 2, "best_of": 5}, 5),
        ({"prompt": ["a", "b", "c"], "n": 2}, 6),
        ({"prompt": [1, 2, 3], "n": 2}, 2),
        ({"prompt": [[1], [2]], "best_of": 3}, 6),
    ],
)
def test_upstream_calls_are_prompts_times_n_or_best_of(extra: dict[str, Any], calls: int) -> None:
    assert accepted(CompletionRequest, {**BODY, **extra}).upstream_calls() == calls
