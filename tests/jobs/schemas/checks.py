"""Assertions the schema tests share: a body is accepted as sent, or refused naming its param."""

from __future__ import annotations

import io
from typing import Any

import pytest

from gateway.http.errors import InvalidRequest
from gateway.http.parsers import read_json_body
from jobs.schemas.base import RequestBody, parse_request


def accepted(schema: type[RequestBody], body: dict[str, Any]) -> RequestBody:
    """``body`` is valid, and the parsed request holds exactly what the client sent."""
    parsed = parse_request(schema, body)
    assert parsed.model_dump(exclude_unset=True, by_alias=True) == body
    return parsed


def refused(
    schema: type[RequestBody], body: Any, param: str | None, code: str = "invalid_parameter"
) -> InvalidRequest:
    """``body`` is refused with ``code``, naming ``param`` in the param and in the message."""
    with pytest.raises(InvalidRequest) as caught:
        parse_request(schema, body)
    error = caught.value
    assert (error.param, error.code) == (param, code), error.message
    assert error.status_code == 400
    if param is not None:
        assert param in error.message
    return error


def from_json(raw: str) -> Any:
    """A body as the gateway's JSON parser reads it (numbers past the float range are infinite)."""
    return read_json_body(io.BytesIO(raw.encode()), None)
