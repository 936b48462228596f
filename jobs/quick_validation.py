"""Validation of plainly valid completion requests, without DRF's per-field machinery.

``CompletionRequestSerializer`` defines what a valid request is, and says what is wrong with
one. Most submits are plainly valid: known parameters only, each of its exact JSON type, strings
already trimmed, numbers inside their bounds. For those, DRF's fields (copied, run through their
validators and error plumbing one by one) cost more CPU than the rest of the submit's Python.

``quick_validate`` checks such a body against the serializer's own fields (their types,
lengths, bounds and nullability, read from the field objects) and returns what the serializer
would. Anything else (a missing or unknown field, a value to coerce, trim or refuse, a field kind
it does not know) returns None, and the caller runs the serializer, which answers with its own
messages. It never refuses a request itself; the checks across fields are the serializer's own
``resolve_request``. tests/jobs/test_quick_validation.py compares the two on generated bodies.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

from django.conf import settings
from rest_framework import serializers

from gateway.access.principals import Principal
from jobs.fields import (
    IdentifierField,
    StrictBooleanField,
    StrictIntegerField,
    StrictNumberField,
    StrictStringField,
)
from jobs.serializers import CompletionRequestSerializer, PromptField, StopField, resolve_request


class _Defer(Exception):
    """This value is not plainly valid: the serializer decides."""


Check = Callable[[Any], Any]


def validate_completion_request(data: Any, principal: Principal) -> dict[str, Any]:
    """``primary``, ``fallbacks`` and ``params`` of a valid body; the serializer's error if not."""
    valid = quick_validate(data, principal)
    if valid is None:
        serializer = CompletionRequestSerializer(data=data, context={"principal": principal})
        serializer.is_valid(raise_exception=True)
        valid = serializer.validated_data
    return valid


def quick_validate(data: Any, principal: Principal) -> dict[str, Any] | None:
    """The serializer's ``validated_data`` for a plainly valid body; None to ask the serializer."""
    if type(data) is not dict:
        return None
    checks = _checks()
    if not data.keys() <= checks.keys() or not data.keys() >= _REQUIRED:
        return None
    try:
        # In the serializer's field order, as DRF returns them.
        attrs = {name: check(data[name]) for name, check in checks.items() if name in data}
    except _Defer:
        return None
    return resolve_request(attrs, principal)


_REQUIRED = frozenset(
    name for name, field in CompletionRequestSerializer._declared_fields.items() if field.required
)


@functools.cache
def _checks() -> dict[str, Check]:
    """A check for every declared field this module knows how to check."""
    found = {}
    for name, field in CompletionRequestSerializer._declared_fields.items():
        check = _check_for(field)
        if check is not None:
            found[name] = _nullable(check) if field.allow_null else check
    return found


def _check_for(field: serializers.Field) -> Check | None:
    if isinstance(field, StrictBooleanField):
        return _boolean
    if isinstance(field, StrictIntegerField):
        return functools.partial(_integer, field.min_value, field.max_value)
    if isinstance(field, StrictNumberField):
        return functools.partial(_number, field.min_value, field.max_value)
    if isinstance(field, StrictStringField):
        return _string_check(field)
    if isinstance(field, serializers.ListField) and isinstance(field.child, StrictStringField):
        item_check = _string_check(field.child)
        plain_list = field.min_length is None and field.max_length is None and field.allow_empty
        if item_check is None or not plain_list:
            return None
        return functools.partial(_list_of, item_check)
    if isinstance(field, PromptField):
        return _prompt
    if isinstance(field, StopField):
        return _stop
    return None


def _nullable(check: Check) -> Check:
    def nullable(value: Any) -> Any:
        return None if value is None else check(value)

    return nullable


def _boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise _Defer
    return value


def _integer(low: int | None, high: int | None, value: Any) -> int:
    if type(value) is not int or not _within(low, high, value):
        raise _Defer
    return value


def _number(low: float | None, high: float | None, value: Any) -> float:
    if type(value) not in (int, float) or not _within(low, high, value):
        raise _Defer
    try:
        number = float(value)
    except OverflowError:  # an unbounded field and an integer past the float range
        raise _Defer from None
    if not math.isfinite(number):
        raise _Defer
    return number


def _within(low: float | None, high: float | None, value: float) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def _string_check(field: StrictStringField) -> Check | None:
    if field.min_length is not None:
        return None
    printable = isinstance(field, IdentifierField)
    return functools.partial(
        _string, field.max_length, field.allow_blank, field.trim_whitespace, printable
    )


def _string(
    max_length: int | None, allow_blank: bool, trim: bool, printable: bool, value: Any
) -> str:
    if type(value) is not str:
        raise _Defer
    if printable and not value.isprintable():
        raise _Defer
    if value == "":
        if not allow_blank:
            raise _Defer
        return value
    if (trim and value != value.strip()) or (max_length is not None and len(value) > max_length):
        raise _Defer
    if "\x00" in value or not _encodable(value):
        raise _Defer
    return value


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False  # a lone surrogate
    return True


def _list_of(check: Check, value: Any) -> list[Any]:
    if type(value) is not list:
        raise _Defer
    return [check(item) for item in value]


def _prompt(value: Any) -> str | list[str]:
    limit = settings.GATEWAY_MAX_PROMPT_CHARS
    if type(value) is str:
        if len(value) > limit:
            raise _Defer
        return value
    if (
        type(value) is not list
        or not value
        or len(value) > settings.GATEWAY_MAX_PROMPTS
        or not all(type(item) is str and len(item) <= limit for item in value)
    ):
        raise _Defer
    return list(value)


def _stop(value: Any) -> str | list[str]:
    if type(value) is str:
        return value
    if type(value) is list and len(value) <= 4 and all(type(item) is str for item in value):
        return list(value)
    raise _Defer
