"""API views whose everyday requests skip DRF's request/response cycle.

Submits and polls are nearly all of the gateway's traffic. DRF's cycle around them (wrapping the
request, building parsers, authenticators, permissions and a negotiator, rendering through a
template response) costs about as much CPU as a poll's own work. A ``FastPathView`` answers by
itself the requests whose outcome that cycle cannot change:

- the method is one of the view's ``fast_methods``;
- the Accept header is plain (none, ``*/*``, ``application/json``) and there is no query string,
  so the answer is JSON without negotiating (``gateway.http.renderers.wants_plain_json``);
- a body, where the method takes one, is declared ``application/json`` with a Content-Length.

Everything else (OPTIONS, HEAD, other methods, other Accept headers, other content types, a
missing length, ``?format=``) goes through DRF's dispatch, whose answers (405, 406, 415, the
OPTIONS metadata) are unchanged. Both paths authenticate with ``authenticate_request``, read the
body with ``read_json_body``, run the view's one ``handle`` method, render errors with
``error_answer`` and JSON with DRF's renderer, so the status, headers and body are the same
either way (tests/gateway/test_fastpath.py sends the same requests down both and compares).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from rest_framework.exceptions import NotAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway.access.authentication import authenticate_request
from gateway.access.principals import Principal, principal_of
from gateway.http.errors import error_answer, error_headers
from gateway.http.parsers import declared_length, read_json_body
from gateway.http.renderers import wants_plain_json

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
JSON = "application/json"


@dataclass(frozen=True)
class Answer:
    """What a view answers, before either path renders it."""

    body: dict[str, Any]
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)


def takes_fast_path(request: HttpRequest, fast_methods: frozenset[str]) -> bool:
    if request.method not in fast_methods:
        return False
    meta = request.META
    if not wants_plain_json(meta):
        return False
    if request.method not in BODY_METHODS:
        return True
    content_type: str = meta.get("CONTENT_TYPE", "")
    length = declared_length(meta.get("CONTENT_LENGTH"))
    return (content_type == JSON or content_type.startswith(JSON + ";")) and bool(length)


class FastPathView(APIView):
    """An APIView whose ``handle`` answers plain JSON requests without DRF's cycle.

    Subclasses set ``fast_methods`` and implement ``handle``; their DRF method handlers (kept for
    the OpenAPI document and the other requests) return ``self.answer(request, **kwargs)``.
    """

    fast_methods: frozenset[str] = frozenset()
    _renderer = JSONRenderer()

    def handle(
        self, request: HttpRequest, principal: Principal, data: Any, **kwargs: Any
    ) -> Answer:
        """The view's one answer to an authenticated request; ``data`` is the parsed body (None
        for a method without one), ``kwargs`` the URL's arguments. Every subclass defines it."""
        raise NotImplementedError

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not takes_fast_path(request, self.fast_methods):
            return super().dispatch(request, *args, **kwargs)
        try:
            principal = authenticate_request(request.META)
            if principal is None:
                raise NotAuthenticated()
            data = None
            if request.method in BODY_METHODS:
                data = read_json_body(request, request.META.get("CONTENT_LENGTH"))
            answer = self.handle(request, principal, data, **kwargs)
        except Exception as exc:
            error = error_answer(exc, self)
            if error is None:
                raise  # a bug: Django's 500 handler answers, as on DRF's path
            body, status = error
            answer = Answer(body, status, error_headers(status))
        response = HttpResponse(
            self._renderer.render(answer.body), status=answer.status, content_type=JSON
        )
        for name, value in answer.headers.items():
            response[name] = value
        response["Allow"] = ", ".join(self.allowed_methods)
        return response

    def answer(self, request: Request, **kwargs: Any) -> Response:
        """DRF's path: ``handle`` on DRF's authenticated request and parsed body."""
        data = request.data if request.method in BODY_METHODS else None
        answer = self.handle(request._request, principal_of(request), data, **kwargs)
        return Response(answer.body, status=answer.status, headers=dict(answer.headers))
