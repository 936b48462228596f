"""The request id: taken from ``X-Request-ID`` when it is sane, made otherwise, bound to every
log line logged while the request is served, and sent back in the response's ``X-Request-ID``."""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase
from structlog.contextvars import bind_contextvars

HEADER = "X-Request-ID"
MAX_LENGTH = 128
# A caller's id goes into log lines and a response header: letters, digits and . _ : - only.
_SANE = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_LENGTH}}}")


def request_id_from(given: str | None) -> str:
    """The caller's id if it is sane, else a new one."""
    if given and _SANE.fullmatch(given):
        return given
    # 128 random bits as 32 hex digits, like a uuid4's hex. An id only has to be unique, not
    # unguessable, and Python's generator (reseeded in a forked child) needs no system call.
    return f"{random.getrandbits(128):032x}"


class RequestIdMiddleware:
    """First in MIDDLEWARE, so the id is bound for everything a request logs.

    The id stays bound in the request's thread after the response leaves this middleware:
    Django logs a 5xx answer (``django.request``) only then, and the thread's next
    request binds its own id before it logs anything. Other threads start without one.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        request_id = request_id_from(request.META.get("HTTP_X_REQUEST_ID"))
        bind_contextvars(request_id=request_id)
        response = self.get_response(request)
        response[HEADER] = request_id
        return response
