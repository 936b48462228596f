"""quick_validate gives what the serializer gives, or steps aside (jobs/quick_validation.py)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ValidationError

from gateway.access.principals import Principal
from gateway.http.errors import GatewayError
from jobs import quick_validation
from jobs.quick_validation import quick_validate, validate_completion_request
from jobs.serializers import CompletionRequestSerializer
from tests.factories import VirtualKeyFactory
from tests.helpers import VALID_BODY

pytestmark = pytest.mark.django_db

FIELDS = list(CompletionRequestSerializer._declared_fields)

# Integers of hundreds of digits, past the float range, either sign.
HUGE_INTEGERS = st.integers(min_value=10**300, max_value=10**1000) | st.integers(
    min_value=-(10**1000), max_value=-(10**300)
)

# Values near every edge the fields have: types, blanks, whitespace, bounds, nulls, NUL and lone
# surrogates, lists of the wrong length or item type.
VALUES = st.one_of(
    st.sampled_from(
        [
            None,
            True,
            False,
            0,
            1,
            -1,
            2,
            3,
            5,
            20,
            21,
            128,
            129,
            -3,
            0.5,
            1.0,
            2.0,
            2.5,
            -2.0,
            -2.5,
            5.0,
            float("inf"),
            float("nan"),
            10**30,
            -(2**63),
            2**63,
            10**400,
            -(10**400),
            10**5000,
            1.7976931348623157e308,
            -1e308,
            "",
            " ",
            "hi",
            " hi",
            "hi ",
            "openai/gpt-test",
            "anthropic/claude-test",
            " openai/gpt-test",
            "nope/x",
            "gpt-test",
            "openai/gpt-test\n",
            "openai/gpt\x1btest",
            "openai/gpt\u2028test",
            ["openai/gpt-test", "openai/x\x85"],
            "a" * 300,
            "a" * 301,
            "a\x00b",
            "\ud800",
            "5",
            [],
            ["hi"],
            ["hi", "there"],
            ["a", 1],
            [None],
            ["a", "b", "c", "d"],
            ["a", "b", "c", "d", "e"],
            ["openai/gpt-test"],
            [" openai/gpt-test"],
            {"50256": -100},
            {"x": 1},
            {},
        ]
    ),
    st.integers(min_value=-(2**64), max_value=2**64),
    HUGE_INTEGERS,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.lists(st.text(max_size=5), max_size=6),
)

BODIES = st.dictionaries(
    st.sampled_from([*FIELDS, "unknown_parameter"]), VALUES, max_size=len(FIELDS) + 1
).map(lambda body: {"model": "openai/gpt-test", "prompt": "hi", **body})


# Bodies whose every value has its field's type, inside or just outside its bounds: most of
# these are plainly valid, so the quick path's answers are compared, not only its refusals.
_INTEGERS = st.one_of(
    st.none(),
    st.integers(-3, 130),
    st.sampled_from([2**63 - 1, -(2**63), 2**63, 10_000_001]),
    HUGE_INTEGERS,
)
_NUMBERS = st.one_of(st.none(), st.integers(-3, 3), st.floats(-3, 3), HUGE_INTEGERS, st.floats())
_TEXTS = st.one_of(st.none(), st.text(max_size=10))
_STOP_LISTS = st.lists(st.text(max_size=3), max_size=5)
TYPED_BODIES = st.fixed_dictionaries(
    {
        "model": st.sampled_from(
            ["openai/gpt-test", "openai/x", "anthropic/claude-test", "bad", "openai/x\u2029"]
        ),
        "prompt": st.one_of(st.text(max_size=10), st.lists(st.text(max_size=5), max_size=4)),
    },
    optional={
        "fallbacks": st.one_of(
            st.none(),
            st.lists(
                st.sampled_from(["openai/gpt-2", "anthropic/c", "x/y", "bad", "openai/\ny"]),
                max_size=6,
            ),
        ),
        "stream": st.one_of(st.none(), st.booleans()),
        "echo": st.one_of(st.none(), st.booleans()),
        "best_of": _INTEGERS,
        "n": _INTEGERS,
        "logprobs": _INTEGERS,
        "max_tokens": _INTEGERS,
        "seed": _INTEGERS,
        "frequency_penalty": _NUMBERS,
        "presence_penalty": _NUMBERS,
        "temperature": _NUMBERS,
        "top_p": _NUMBERS,
        "stop": st.one_of(st.none(), st.text(max_size=3), _STOP_LISTS),
        "suffix": _TEXTS,
        "user": _TEXTS,
    },
)


def _serializer(data: Any, principal: Principal) -> tuple[str, Any]:
    serializer = CompletionRequestSerializer(data=data, context={"principal": principal})
    try:
        serializer.is_valid(raise_exception=True)
    except (ValidationError, GatewayError) as exc:
        return "refused", _error(exc)
    return "valid", serializer.validated_data


def _error(exc: Exception) -> Any:
    if isinstance(exc, GatewayError):
        return (type(exc).__name__, exc.code, exc.param, exc.message)
    return ("ValidationError", str(exc))


@pytest.fixture
def principal() -> Principal:
    key: Any = VirtualKeyFactory(allowed_models=["openai/*"])
    return Principal(virtual_key=key)


@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=st.one_of(BODIES, TYPED_BODIES))
def test_quick_validation_agrees_with_the_serializer(body: dict[str, Any], principal: Principal):
    expected = _serializer(body, principal)
    try:
        quick = quick_validate(body, principal)
    except GatewayError as exc:
        # Only the checks across fields refuse, and they are the serializer's own.
        assert expected == ("refused", _error(exc))
        return
    if quick is not None:
        assert expected == ("valid", quick)


@pytest.mark.parametrize(
    "body",
    [
        VALID_BODY,
        {
            "model": "openai/gpt-test",
            "prompt": ["a", "b"],
            "fallbacks": ["openai/gpt-other"],
            "max_tokens": 16,
            "temperature": 1,
            "top_p": 0.5,
            "n": 2,
            "best_of": 3,
            "stop": ["\n"],
            "user": "u-1",
            "seed": 42,
            "echo": False,
            "stream": None,
            "suffix": "",
            "presence_penalty": -2,
            "frequency_penalty": 2.0,
            "logprobs": 5,
        },
    ],
)
def test_everyday_bodies_take_the_quick_path(body: dict[str, Any], principal: Principal):
    quick = quick_validate(body, principal)
    assert quick is not None
    assert ("valid", quick) == _serializer(body, principal)


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"prompt": "hi"},
        {**VALID_BODY, "colour": "red"},
        {**VALID_BODY, "model": " openai/gpt-test"},
        {**VALID_BODY, "max_tokens": 5.0},
        {**VALID_BODY, "temperature": "1"},
        {**VALID_BODY, "logit_bias": {"50256": -100}},
        {**VALID_BODY, "user": "a\x00"},
        {**VALID_BODY, "model": "openai/gpt\ntest"},
        {**VALID_BODY, "fallbacks": ["openai/x\u2028"]},
        {**VALID_BODY, "temperature": 10**400},
    ],
)
def test_bodies_that_are_not_plainly_valid_go_to_the_serializer(
    body: Any, principal: Principal, monkeypatch: pytest.MonkeyPatch
):
    assert quick_validate(body, principal) is None
    calls: list[Any] = []
    real = CompletionRequestSerializer.is_valid

    def spy(self: CompletionRequestSerializer, **kwargs: Any) -> bool:
        calls.append(self.initial_data)
        return real(self, **kwargs)

    monkeypatch.setattr(CompletionRequestSerializer, "is_valid", spy)
    with contextlib.suppress(ValidationError, GatewayError):
        validate_completion_request(body, principal)
    assert calls == [body]


def test_a_field_kind_it_does_not_know_is_left_to_the_serializer():
    assert "logit_bias" not in quick_validation._checks()
    assert {"model", "prompt", "max_tokens", "temperature", "fallbacks", "stop"} <= set(
        quick_validation._checks()
    )
