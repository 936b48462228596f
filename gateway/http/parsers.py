"""A JSON parser that refuses what would otherwise surface as a 500 further down.

Bodies above GATEWAY_MAX_BODY_BYTES are refused with 413 before being read whole; NaN and
Infinity are not JSON; NUL characters and lone surrogates cannot be stored in Postgres text;
arrays and objects nest at most MAX_NESTING deep.

Numbers past the float range are infinite: Python already reads ``1e999`` so, and an integer
literal with more digits than the largest float reads the same way, rather than as an exact
integer (converting thousands of digits costs time, and past 4300 of them Python refuses). Every
numeric parameter then refuses the value as out of range, naming itself.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from gateway.http.errors import InvalidRequest, PayloadTooLarge

# Deeper than any request the API defines, and far from Python's recursion limit.
MAX_NESTING = 64
TOO_DEEP = f"Request body nests arrays and objects more than {MAX_NESTING} levels deep."
# A longer literal has at least one digit more than the largest float, with room for a sign.
_INTEGER_CHARS = len(str(int(sys.float_info.max))) + 1


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_int(literal: str) -> int | float:
    return int(literal) if len(literal) <= _INTEGER_CHARS else float(literal)


# One decoder for every request: json.loads would build one per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_int=_parse_int)


def check_text(value: Any, path: str = "", depth: int = 0) -> None:
    """Raise InvalidRequest naming the first string that holds NUL or a lone surrogate, and
    ParseError when arrays and objects nest deeper than MAX_NESTING."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidRequest(
                "NUL characters are not allowed.", param=path or None, code="invalid_characters"
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest(
                "Strings must be valid Unicode (lone surrogate found).",
                param=path or None,
                code="invalid_characters",
            ) from None
    elif isinstance(value, dict):
        if depth == MAX_NESTING:
            raise ParseError(TOO_DEEP)
        for key, item in value.items():
            check_text(key, path)
            check_text(item, f"{path}.{key}" if path else str(key), depth + 1)
    elif isinstance(value, list):
        if depth == MAX_NESTING:
            raise ParseError(TOO_DEEP)
        for index, item in enumerate(value):
            check_text(item, f"{path}[{index}]", depth + 1)


def declared_length(value: str | None) -> int | None:
    """A Content-Length header's number, or None unless it is plain ASCII digits.

    Past 18 digits it is read as 10**18, which no body limit comes near: Python refuses to
    convert a number of more than 4300 digits, and a header can hold more.
    """
    if not value or not (value.isascii() and value.isdigit()):
        return None
    digits = value.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else 10**18


def read_json_body(stream: Any, declared: str | None) -> Any:
    """Read and parse a JSON request body of at most GATEWAY_MAX_BODY_BYTES.

    ``declared`` is the request's Content-Length; a larger one is refused before a byte
    is read. Raises PayloadTooLarge (413) or ParseError/InvalidRequest (400).
    """
    limit = settings.GATEWAY_MAX_BODY_BYTES
    length = declared_length(declared)
    if length is not None and length > limit:
        raise PayloadTooLarge(f"Request body is larger than {limit} bytes.")
    raw = stream.read(limit + 1) if stream is not None else b""
    if len(raw) > limit:
        raise PayloadTooLarge(f"Request body is larger than {limit} bytes.")
    if not raw:
        raise ParseError("Request body is empty; a JSON object is required.")
    try:
        data = _DECODER.decode(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ParseError("Request body is not valid UTF-8.") from None
    except RecursionError:
        # Where the decoder gives up depends on how deep the caller's stack already is; the
        # answer must not, so it is the one check_text gives.
        raise ParseError(TOO_DEEP) from None
    except ValueError as exc:
        raise ParseError(f"Request body is not valid JSON: {exc}") from None
    check_text(data)
    return data


class StrictJSONParser(BaseParser):
    media_type = "application/json"

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        return read_json_body(stream, declared)
