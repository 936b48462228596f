"""A JSON parser that refuses what would otherwise surface as a 500 further down.

Bodies above GATEWAY_MAX_BODY_BYTES are refused with 413 before being read whole; NaN and
Infinity are not JSON; NUL characters and lone surrogates cannot be stored in Postgres text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from gateway.errors import InvalidRequest, PayloadTooLarge


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def check_text(value: Any, path: str = "") -> None:
    """Raise InvalidRequest naming the first string that holds NUL or a lone surrogate."""
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
        for key, item in value.items():
            check_text(key, path)
            check_text(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_text(item, f"{path}[{index}]")


def read_json_body(stream: Any, declared: str | None) -> Any:
    """Read and parse a JSON request body of at most GATEWAY_MAX_BODY_BYTES.

    ``declared`` is the request's Content-Length; a larger one is refused before a byte
    is read. Raises PayloadTooLarge (413) or ParseError/InvalidRequest (400).
    """
    limit = settings.GATEWAY_MAX_BODY_BYTES
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body is larger than {limit} bytes.")
    raw = stream.read(limit + 1) if stream is not None else b""
    if len(raw) > limit:
        raise PayloadTooLarge(f"Request body is larger than {limit} bytes.")
    if not raw:
        raise ParseError("Request body is empty; a JSON object is required.")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise ParseError("Request body is not valid UTF-8.") from None
    except (ValueError, RecursionError) as exc:
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
