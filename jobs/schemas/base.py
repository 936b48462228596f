"""What every request body carries, and the one way a body is checked against its schema.

A schema is a ``RequestBody`` subclass: the OpenAI parameters of its request type, strictly
typed, plus the gateway's own ``model`` (provider/model), ``fallbacks`` and ``stream``.
``parse_request`` validates a parsed JSON body and turns the first refusal into an
``InvalidRequest`` naming the param as OpenAI does (``messages[0].content``, ``stop``).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationError
from pydantic_core import ErrorDetails

from gateway.http.errors import InvalidRequest
from jobs.schemas.fields import INVALID, UNKNOWN_TYPE, JsonObject, ModelName, refuse

# The fields the gateway reads itself, never sent upstream as they are.
GATEWAY_FIELDS = frozenset({"model", "fallbacks", "stream"})


def _no_streaming(value: bool | None) -> bool | None:
    if value:
        raise refuse(
            "Streaming is not supported for async requests.", code="streaming_not_supported"
        )
    return value


class RequestBody(JsonObject):
    """A request to the gateway: a model to send it to, and where to send it next."""

    model: ModelName
    fallbacks: list[ModelName] | None = Field(
        default=None, description="Models to try, in order, when the model fails."
    )
    stream: Annotated[bool | None, AfterValidator(_no_streaming)] = Field(
        default=None, description="Must be false or absent: a job's result is polled."
    )

    def upstream_calls(self) -> int:
        """How many choices one job asks its provider for: one unless ``n`` asks more."""
        n = getattr(self, "n", None)
        return n if isinstance(n, int) else 1


def parse_request(schema: type[RequestBody], data: Any) -> RequestBody:
    """``data`` validated by ``schema``; an InvalidRequest naming the first thing wrong."""
    if not isinstance(data, dict):
        raise InvalidRequest("Request body must be a JSON object.", code="invalid_body")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise _refusal(data, exc.errors(include_url=False)) from None


# Errors with a code of their own; any other refusal is "invalid_parameter".
OWN_CODES = frozenset(
    {"invalid_characters", "invalid_model", "streaming_not_supported", "unsupported_parameter"}
)

# What is wrong, in plain words, by pydantic error type; its context fills the braces.
MESSAGES = {
    "missing": "This field is required.",
    "int_type": "Must be an integer.",
    "float_type": "Must be a number.",
    "bool_type": "Must be a boolean (true or false).",
    "string_type": "Must be a string.",
    "list_type": "Must be an array.",
    "dict_type": "Must be an object.",
    "model_type": "Must be an object.",
    "model_attributes_type": "Must be an object.",
    "less_than_equal": "Ensure this value is less than or equal to {le}.",
    "greater_than_equal": "Ensure this value is greater than or equal to {ge}.",
    "less_than": "Ensure this value is less than {lt}.",
    "greater_than": "Ensure this value is greater than {gt}.",
    "too_short": "Must hold at least {min_length} items.",
    "too_long": "Must hold at most {max_length} items.",
    "string_too_short": "Must hold at least {min_length} characters.",
    "string_too_long": "Must hold at most {max_length} characters.",
    "literal_error": "Must be {expected}.",
    "union_tag_invalid": "Must be {expected_tags}.",
    "union_tag_not_found": "This field is required.",
}


def _refusal(data: dict[str, Any], errors: list[ErrorDetails]) -> InvalidRequest:
    # Unknown top-level fields first, the first by name, whatever else is wrong.
    unknown = sorted(
        str(error["loc"][0])
        for error in errors
        if error["type"] == "extra_forbidden" and len(error["loc"]) == 1
    )
    if unknown:
        return _unknown(unknown[0])
    error = errors[0]
    kind = error["type"]
    ctx = error.get("ctx", {})
    param = _param(data, error["loc"], missing=kind == "missing")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        # A tagged union names its tag field ('role', 'type') in its context, quoted.
        param = _join(param, "." + ctx["discriminator"].strip("'"))
    elif kind == UNKNOWN_TYPE:
        param = _join(param, ".type")
    param = _join(param, ctx.get("at", ""))
    if kind == "extra_forbidden":
        return _unknown(param)
    return InvalidRequest(
        f"{param}: {_text(error)}" if param else _text(error),
        param=param or None,
        code=kind if kind in OWN_CODES else INVALID,
    )


def _text(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = error.get("ctx", {})
    if kind in ("too_short", "string_too_short") and ctx.get("min_length") == 1:
        return "Must not be empty."
    template = MESSAGES.get(kind)
    if template is None:
        return error["msg"]
    # A float bound reads as the client wrote it: 2, not 2.0.
    plain = {
        name: int(value) if isinstance(value, float) and value.is_integer() else value
        for name, value in ctx.items()
    }
    return template.format(**plain)


def _unknown(param: str) -> InvalidRequest:
    return InvalidRequest(
        f"Unrecognized request argument: {param}.", param=param, code="unknown_parameter"
    )


# Parameters whose keys are the client's own (token ids, metadata names): an error inside one
# names the parameter.
MAPS = frozenset({"logit_bias", "metadata"})


def _param(data: Any, loc: tuple[int | str, ...], *, missing: bool) -> str:
    """The path of an error in the body, as OpenAI writes it: ``messages[0].content``.

    Pydantic's location also holds the tag of each union member it went into ("string",
    "user"); those are not in the body, so the path follows the body itself, keeping only the
    keys and indexes found there, and the last key of a missing field.
    """
    path = ""
    value = data
    last = len(loc) - 1
    for position, key in enumerate(loc):
        if path in MAPS:
            break  # the client's own keys (a 400-digit token id, say) never become the param
        if isinstance(value, dict) and key in value:
            value = value[key]
            path = _join(path, f".{key}")
        elif isinstance(value, list) and isinstance(key, int) and 0 <= key < len(value):
            value = value[key]
            path = f"{path}[{key}]"
        elif missing and position == last:
            path = _join(path, f".{key}")
    return path


def _join(path: str, below: str) -> str:
    joined = path + below
    return joined[1:] if joined.startswith(".") else joined
