"""Strict JSON field types: OpenAI refuses "0.5" for a number and 1 for a boolean, and so do we."""

from __future__ import annotations

import math
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from gateway.http.errors import InvalidRequest


# A plain Field has no type in the API document, which would then call it a string.
@extend_schema_field(OpenApiTypes.BOOL)
class StrictBooleanField(serializers.Field):
    default_error_messages = {"invalid": "Must be a boolean (true or false)."}

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data

    def to_representation(self, value: Any) -> bool:
        return bool(value)


def _refuse_out_of_bounds(field: StrictIntegerField | StrictNumberField, data: float) -> None:
    """Compare with the bounds before converting anything.

    Python compares an int of any size, or an infinity, with a bound exactly, whereas turning a
    400-digit integer into a float raises OverflowError: a number past a bound is refused as
    out of range, whatever its size.
    """
    if field.max_value is not None and data > field.max_value:
        field.fail("max_value", max_value=field.max_value)
    if field.min_value is not None and data < field.min_value:
        field.fail("min_value", min_value=field.min_value)


class StrictIntegerField(serializers.IntegerField):
    default_error_messages = {"invalid": "Must be an integer."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        _refuse_out_of_bounds(self, data)
        if isinstance(data, float) and not (math.isfinite(data) and data.is_integer()):
            self.fail("invalid")
        return int(data)


class StrictNumberField(serializers.FloatField):
    default_error_messages = {
        "invalid": "Must be a number.",
        "overflow": "Must be a finite number.",
    }

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        _refuse_out_of_bounds(self, data)
        try:
            value = float(data)
        except OverflowError:
            self.fail("overflow")
        if not math.isfinite(value):
            self.fail("overflow")
        return value


class StrictStringField(serializers.CharField):
    default_error_messages = {"invalid": "Must be a string."}

    def run_validation(self, data: Any = serializers.empty) -> Any:
        # Before CharField's blank check, which calls str() on whatever came: an integer of
        # thousands of digits would raise there instead of being refused.
        if data is not serializers.empty and data is not None and not isinstance(data, str):
            self.fail("invalid")
        return super().run_validation(data)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        value: str = super().to_internal_value(data)
        return value


class IdentifierField(StrictStringField):
    """A string that names something and is logged, a ``provider/model``: printable only.

    A newline, a control character, a line separator or an invisible character has no
    business in a name, and is refused before whitespace is trimmed, naming ``param`` (the
    field's own name, or the list's for a list of names).
    """

    def __init__(self, *, param: str, **kwargs: Any) -> None:
        self.param = param
        super().__init__(**kwargs)

    def run_validation(self, data: Any = serializers.empty) -> Any:
        # Before CharField's own checks, which would call "\n" blank rather than unprintable.
        if isinstance(data, str) and not data.isprintable():
            raise InvalidRequest(
                f"{self.param} must hold printable characters only (no control, separator or "
                f"invisible ones), got {data!r}.",
                param=self.param,
                code="invalid_characters",
            )
        return super().run_validation(data)
