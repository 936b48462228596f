"""The value types the request schemas share, and how their validators refuse a value.

Every object is a ``JsonObject``: strict (a JSON value of the wrong type is refused, never
converted: "1" is not an integer, 1.0 is not an integer, true is not 1) and closed (an unknown
field is refused). Unions are chosen by the value's JSON type or by a tag field, so that a
refusal speaks of the member the client meant instead of every member in turn.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

INT64_MAX = 2**63 - 1
# Vocabularies hold far fewer tokens; the bound keeps a 400-digit token id from reaching a provider.
MAX_TOKEN_ID = 2**31 - 1
# The error type, and the API error code, of a value refused for any reason without its own code.
INVALID = "invalid_parameter"
# The error type of an object whose ``type`` names none of a union's members: refused naming
# its ``type`` (a Discriminator cannot say so itself: its error context makes the union
# unhashable).
UNKNOWN_TYPE = "unknown_type"


class JsonObject(BaseModel):
    """A JSON object of the API: strict types, no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid")


def refuse(
    message: str, *, at: str = "", code: str = INVALID, **context: str
) -> PydanticCustomError:
    """The error a validator raises; ``at`` is where, below the value validated (".best_of",
    "[2]"), ``code`` the API error code, and ``context`` fills the message's braces (a client's
    value goes there, never into the message itself, where its braces would be read)."""
    return PydanticCustomError(code, message, {"at": at, **context})


def json_type(value: Any) -> str:
    """The JSON type of a parsed value (or of a validated one, when it is serialized), the tag
    of the union member that takes it."""
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict | BaseModel):
        return "object"
    return "other"


def input_kind(value: Any) -> str | None:
    """Which form of text input a prompt or an embedding input is: a string, strings, tokens
    (one array of token ids) or token lists (arrays of them), judged by the first item."""
    if isinstance(value, str):
        return "text"
    if not isinstance(value, list):
        return None
    first = value[0] if value else ""
    if type(first) is int:
        return "tokens"
    if isinstance(first, list):
        return "token_lists"
    return "texts"


def _model_name(value: str) -> str:
    if not value.isprintable():
        raise refuse(
            "Must hold printable characters only (no control, separator or invisible ones), "
            "got {value}.",
            code="invalid_characters",
            value=repr(value),
        )
    value = value.strip()
    if not value:
        raise refuse("Must name a model, in provider/model format.", code="invalid_model")
    return value


ModelName = Annotated[
    str,
    Field(max_length=300, description="A model in provider/model format."),
    AfterValidator(_model_name),
]


def _token_id_key(value: str) -> str:
    if not (
        value.isascii()
        and value.isdigit()
        and len(value) <= len(str(MAX_TOKEN_ID))
        and int(value) <= MAX_TOKEN_ID
    ):
        raise refuse(f"Must be a token id: an integer from 0 to {MAX_TOKEN_ID}, as a string.")
    return value


_FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def _function_name(value: str) -> str:
    if not _FUNCTION_NAME.fullmatch(value):
        raise refuse("Must be 1 to 64 letters, digits, underscores or dashes.")
    return value


def _range_first(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Refuse a number out of an integer's range as out of range, whatever its JSON type.

    A float is never an integer here; but a JSON integer too large for Python to read exactly
    arrives as an infinity (gateway/http/parsers.py), and 1e20 tokens is out of range before it
    is not an integer. Trying the integer nearest the value yields the field's own range error.
    """
    if isinstance(value, float):
        nearest = int(value) if math.isfinite(value) else (_HUGE if value > 0 else -_HUGE)
        handler(nearest)
    return handler(value)


_HUGE = 10**400
# Every integer field: the range checked before the type (see _range_first). Its bounds must
# come before it in the Annotated, so that they are checked by its handler.
RANGE_FIRST = WrapValidator(_range_first)

TokenId = Annotated[int, Field(ge=0, le=MAX_TOKEN_ID), RANGE_FIRST]
Temperature = Annotated[float, Field(ge=0, le=2)]
TopP = Annotated[float, Field(ge=0, le=1)]
Penalty = Annotated[float, Field(ge=-2, le=2)]
Choices = Annotated[int, Field(ge=1, le=128), RANGE_FIRST]
Seed = Annotated[int, Field(ge=-INT64_MAX - 1, le=INT64_MAX), RANGE_FIRST]
MaxTokens = Annotated[int, Field(ge=0, le=10_000_000), RANGE_FIRST]
# A limit on the tokens (or tool calls) of one answer: bounded, so no 400-digit integer reaches
# a provider.
TokenLimit = Annotated[int, Field(ge=1, le=10_000_000), RANGE_FIRST]
TopLogprobs = Annotated[int, Field(ge=0, le=20), RANGE_FIRST]
User = Annotated[str, Field(max_length=256)]
FunctionName = Annotated[
    str,
    AfterValidator(_function_name),
    WithJsonSchema({"type": "string", "pattern": f"^{_FUNCTION_NAME.pattern}$"}),
]
LogitBias = Annotated[
    dict[
        Annotated[str, AfterValidator(_token_id_key)],
        Annotated[float, Field(ge=-100, le=100)],
    ],
    Field(
        max_length=1024,
        description="Token ids (integers as strings) mapped to a bias from -100 to 100.",
    ),
]
Metadata = Annotated[
    dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]],
    Field(max_length=16),
]
Stop = Annotated[
    Annotated[str, Tag("string")] | Annotated[list[str], Field(max_length=4), Tag("array")],
    Discriminator(
        json_type,
        custom_error_type=INVALID,
        custom_error_message="Must be a string or an array of at most 4 strings.",
    ),
]
ServiceTier = Literal["auto", "default", "flex", "scale", "priority"]
# As the openai SDK of requirements-dev.txt lists them.
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
