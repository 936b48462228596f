"""Numbers past every bound, for the fuzzing runs: what schema-driven generation never sends.

Schemathesis draws numbers from the bounds the API document declares (inside them, or just past
them in its negative mode), so a 400-digit integer never reaches the gateway that way; yet one
once turned into a 500. ``add_extreme_numbers`` registers a body hook on a schema: half of the
generated JSON bodies get some of their numeric members replaced by an integer of hundreds or
thousands of digits, a float at the edge of the float range, or a value just out of range. Every
``integer`` and ``number`` property of the body's schema is a candidate, and so are the values
and the keys (token ids) of a map of numbers such as ``logit_bias``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import schemathesis
from hypothesis import strategies as st

NUMERIC = ("integer", "number")
FLOAT_MAX = sys.float_info.max


def _either_sign(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return strategy.flatmap(lambda x: st.sampled_from([x, -x]))


# Around the largest float, where an integer stops fitting one, and up to 4000 digits (Python
# refuses to write an int of more than 4300 as text, and bodies are serialised as JSON text).
HUGE_INTEGERS = _either_sign(
    st.sampled_from([int(FLOAT_MAX), int(FLOAT_MAX) + 1, 10**309, 10**400, 10**4000])
    | st.integers(min_value=10**300, max_value=10**320)
    | st.integers(min_value=10**300, max_value=10**4000)
)
HUGE_FLOATS = _either_sign(
    st.sampled_from([FLOAT_MAX, 1e308]) | st.floats(min_value=1e300, max_value=FLOAT_MAX)
)
PAST_64_BITS = st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**19, -(10**19)])
# Token ids (map keys) far past any vocabulary, as decimal strings.
HUGE_TOKEN_IDS = st.sampled_from([str(2**31), str(2**63), "9" * 400]) | st.integers(
    min_value=2**31, max_value=10**400
).map(str)


def extreme_number(schema: Mapping[str, Any]) -> st.SearchStrategy[int | float]:
    """Numbers past every bound, and just past the bounds ``schema`` declares."""
    just_past = [schema["maximum"] + 1] if "maximum" in schema else []
    just_past += [schema["minimum"] - 1] if "minimum" in schema else []
    options = [HUGE_INTEGERS, HUGE_FLOATS, PAST_64_BITS]
    if just_past:
        options.append(st.sampled_from(just_past))
    return st.one_of(options)


def numeric_members(schema: Mapping[str, Any]) -> dict[str, st.SearchStrategy[Any]]:
    """For each numeric member of an object ``schema``: a strategy for its extreme values."""
    members: dict[str, st.SearchStrategy[Any]] = {}
    for name, declared in schema.get("properties", {}).items():
        member = _not_null(declared) or {}
        values = _not_null(member.get("additionalProperties")) or {}
        if member.get("type") in NUMERIC:
            members[name] = extreme_number(member)
        elif values.get("type") in NUMERIC:
            members[name] = _number_map(values)
    return members


def _not_null(member: Any) -> Mapping[str, Any] | None:
    """The member's schema without its null option: an optional member is declared as ``anyOf``
    its type and ``null``."""
    if not isinstance(member, Mapping):
        return None
    options = [
        option
        for option in member.get("anyOf", [member])
        if isinstance(option, Mapping) and option.get("type") != "null"
    ]
    return options[0] if len(options) == 1 else member


def _number_map(values: Mapping[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    small_ids = st.integers(min_value=0, max_value=100_000).map(str)
    in_range = st.integers(min_value=-100, max_value=100)
    huge_value = st.dictionaries(small_ids, extreme_number(values), min_size=1, max_size=3)
    huge_key = st.dictionaries(HUGE_TOKEN_IDS, in_range, min_size=1, max_size=3)
    return huge_value | huge_key


def add_extreme_numbers(schema: schemathesis.BaseSchema) -> None:
    """Make half the JSON object bodies generated from ``schema`` carry extreme numbers: one or
    more of their numeric members set to an extreme value."""

    @schema.hook("flatmap_body")
    def extreme_numbers(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
        members: dict[str, st.SearchStrategy[Any]] = {}
        for declared in context.operation.body if context.operation is not None else []:
            if declared.media_type == "application/json" and declared.resolved_schema is not None:
                members.update(numeric_members(declared.resolved_schema))
        if not isinstance(body, dict) or not members:
            return st.just(body)
        names = st.lists(st.sampled_from(sorted(members)), min_size=1, unique=True)
        extremes = names.flatmap(lambda some: st.fixed_dictionaries({n: members[n] for n in some}))
        return st.just(body) | extremes.map(lambda chosen: {**body, **chosen})
