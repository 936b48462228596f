"""The embedding schema (jobs/schemas/embeddings.py): OpenAI's embeddings parameters."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.schemas.embeddings import EmbeddingRequest
from tests.jobs.schemas.checks import accepted, refused

BODY = {"model": "openai/m", "input": "Say hi"}


@pytest.mark.parametrize(
    "body",
    [
        BODY,
        {**BODY, "input": ["a", "b"]},
        {**BODY, "input": ["a"] * 2048},
        {**BODY, "input": [1, 2, 3]},
        {**BODY, "input": [[1, 2], [3]]},
        {
            **BODY,
            "fallbacks": ["openai/other"],
            "stream": False,
            "dimensions": 256,
            "encoding_format": "base64",
            "user": "u-1",
        },
        {**BODY, "dimensions": None, "encoding_format": "float", "user": None},
    ],
    ids=["text", "texts", "most texts", "tokens", "token lists", "every parameter", "nulls"],
)
def test_a_valid_body_is_accepted_as_sent(body: dict[str, Any]) -> None:
    accepted(EmbeddingRequest, body)


BAD: list[tuple[str, Any, str, str]] = [
    ("input", "", "input", "Must not be empty."),
    ("input", [], "input", "Must not be empty."),
    ("input", ["a", ""], "input[1]", "Must not be empty."),
    ("input", ["a"] * 2049, "input", "Must hold at most 2048 items."),
    ("input", [[1]] * 2049, "input", "Must hold at most 2048 items."),
    ("input", 5, "input", "Must be a string, an array of strings"),
    ("input", None, "input", "Must be a string, an array of strings"),
    ("input", {"text": "a"}, "input", "Must be a string, an array of strings"),
    ("input", ["a", 1], "input[1]", "Must be a string."),
    ("input", [1, "a"], "input[1]", "Must be an integer."),
    ("input", [1, 2.0], "input[1]", "Must be an integer."),
    ("input", [1, -1], "input[1]", "greater than or equal to 0."),
    ("input", [[1], []], "input[1]", "Must not be empty."),
    ("input", [[1], [2**31]], "input[1][0]", "less than or equal to 2147483647."),
    ("input", [[1], 2], "input[1]", "Must be an array."),
    ("dimensions", 0, "dimensions", "greater than or equal to 1."),
    ("dimensions", 65_537, "dimensions", "less than or equal to 65536."),
    ("dimensions", "256", "dimensions", "Must be an integer."),
    ("encoding_format", "int8", "encoding_format", "Must be 'float' or 'base64'."),
    ("user", 7, "user", "Must be a string."),
]


@pytest.mark.parametrize(
    ("field", "value", "param", "message"), BAD, ids=[f"{row[2]}-{i}" for i, row in enumerate(BAD)]
)
def test_a_bad_value_is_refused_naming_its_param(
    field: str, value: Any, param: str, message: str
) -> None:
    error = refused(EmbeddingRequest, {**BODY, field: value}, param)
    assert error.message.startswith(f"{param}: ")
    assert message in error.message


def test_a_missing_input_is_refused() -> None:
    error = refused(EmbeddingRequest, {"model": "openai/m"}, "input")
    assert error.message == "input: This field is required."


@pytest.mark.parametrize("inputs", ["a", ["a", "b", "c"], [[1], [2], [3]]])
def test_upstream_calls_are_one_whatever_the_inputs(inputs: Any) -> None:
    assert accepted(EmbeddingRequest, {**BODY, "input": inputs}).upstream_calls() == 1
