"""One reading of a result's usage for the token rate, the charge and the metrics."""

from __future__ import annotations

import pytest

from jobs.token_usage import TokenUsage, token_usage


@pytest.mark.parametrize(
    ("result", "used"),
    [
        ({"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}, (3, 4)),
        ({"usage": {"input_tokens": 5, "output_tokens": 6, "total_tokens": 11}}, (5, 6)),
        ({"usage": {"prompt_tokens": 8, "total_tokens": 8}}, (8, 0)),  # embeddings
        ({"usage": {"prompt_tokens": 0, "input_tokens": 9}}, (0, 0)),  # the first one named
        ({"usage": {"prompt_tokens": True, "completion_tokens": "9"}}, (0, 0)),
        ({"usage": {"prompt_tokens": -1, "completion_tokens": 2.5}}, (0, 0)),
        ({"usage": None}, (0, 0)),
        ({"usage": [1, 2]}, (0, 0)),
        ({"choices": []}, (0, 0)),
        ([], (0, 0)),
        (None, (0, 0)),
    ],
)
def test_tokens_are_read_from_every_request_types_usage(result, used):
    assert token_usage(result) == TokenUsage(*used)
    assert token_usage(result).total == sum(used)
