from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from gateway.http.errors import InvalidRequest

TTL_HEADER = "x-bf-async-job-result-ttl"


def result_ttl_from(request: HttpRequest) -> int:
    """The result TTL the caller asked for, in seconds; 400 naming the header when it is bad."""
    raw = request.META.get("HTTP_X_BF_ASYNC_JOB_RESULT_TTL")
    if raw is None:
        return int(settings.GATEWAY_DEFAULT_RESULT_TTL)
    # Only HTTP's optional whitespace (spaces, tabs) surrounds a value; CR and LF never do.
    value = raw.strip(" \t")
    maximum = settings.GATEWAY_MAX_RESULT_TTL
    if not (value.isascii() and value.isdigit()) or len(value) > 12 or int(value) < 1:
        raise InvalidRequest(
            f"{TTL_HEADER} must be a positive integer number of seconds.",
            param=TTL_HEADER,
            code="invalid_result_ttl",
        )
    if int(value) > maximum:
        raise InvalidRequest(
            f"{TTL_HEADER} may be at most {maximum} seconds.",
            param=TTL_HEADER,
            code="invalid_result_ttl",
        )
    return int(value)
