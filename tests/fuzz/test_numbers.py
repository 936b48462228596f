"""The fuzzing runs send numbers past every bound to every numeric member (fuzz/numbers.py)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from hypothesis import HealthCheck, Phase, given, settings

from fuzz.numbers import add_extreme_numbers, numeric_members

schema = schemathesis.openapi.from_wsgi("/openapi.json", WSGIHandler())
add_extreme_numbers(schema)
SUBMIT = schema["/v1/async/completions"]["POST"]
(BODY,) = SUBMIT.body
MEMBERS = sorted(numeric_members(BODY.resolved_schema))


def huge_integer(value: Any) -> bool:
    return type(value) is int and abs(value) >= 10**300


def huge_float(value: Any) -> bool:
    return type(value) is float and abs(value) >= 1e300


def test_every_numeric_member_of_the_submit_body_is_a_candidate():
    assert MEMBERS == [
        "best_of",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "max_tokens",
        "n",
        "presence_penalty",
        "seed",
        "temperature",
        "top_p",
    ]


def _generated_bodies(count: int) -> list[dict[str, Any]]:
    """Submit bodies as the fuzzing runs generate them (the hook included), without shrinking."""
    bodies: list[dict[str, Any]] = []

    @settings(
        max_examples=count,
        phases=[Phase.generate],
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=SUBMIT.as_strategy())
    def collect(case: Any) -> None:
        if isinstance(case.body, dict):
            bodies.append(case.body)

    collect()
    return bodies


@pytest.fixture(scope="module")
def bodies() -> list[dict[str, Any]]:
    return _generated_bodies(400)


@pytest.mark.parametrize("member", [m for m in MEMBERS if m != "logit_bias"])
def test_generated_bodies_carry_huge_integers_and_floats_in_every_number(bodies, member):
    values = [body[member] for body in bodies if member in body]
    assert any(huge_integer(value) for value in values)
    assert any(huge_float(value) for value in values)


def test_generated_bodies_carry_huge_logit_bias_values_and_token_ids(bodies):
    maps = [body["logit_bias"] for body in bodies if isinstance(body.get("logit_bias"), dict)]
    assert any(huge_integer(value) for bias in maps for value in bias.values())
    assert any(len(key) > 10 and key.isdigit() for bias in maps for key in bias)


def test_part_of_the_generated_bodies_are_left_as_the_schema_made_them(bodies):
    """The hook adds to schemathesis's own bodies; it does not replace them."""

    def extreme(body: dict[str, Any]) -> bool:
        bias = body.get("logit_bias")
        if isinstance(bias, dict) and any(len(key) > 10 for key in bias):
            return True
        return any(huge_integer(value) or huge_float(value) for value in body.values())

    changed = [body for body in bodies if extreme(body)]
    assert 0.2 < len(changed) / len(bodies) < 0.8
