"""The one request path of the job API's views.

Submits and polls are nearly all of the gateway's traffic, and DRF's request cycle around them
(wrapping the request, building parsers, authenticators, permissions and a negotiator, rendering
through a template response) costs about as much CPU as a poll's own work. A ``JobEndpoint``
keeps DRF's view class, for the OpenAPI document and Django's URL machinery, but answers every
request itself, in the order DRF would:

1. content negotiation: the API answers only JSON, so an Accept header that allows no JSON is a
   406 (a plain one is recognised without parsing it);
2. authentication (``authenticate_request``): no credentials is a 401;
3. the method: one the view has no handler for is a 405; OPTIONS answers the view's metadata;
4. the body, for a method that takes one on a view that takes one (``takes_body``): only
   ``application/json`` (415 otherwise), read and checked by ``read_json_body``;
5. the handler, which returns an ``Answer``;
6. every error on the way is rendered by ``error_answer`` in the error shape.

DRF's permissions, throttles and parsers do not run here; what they would do is done in these
steps, and governance belongs in the handlers' services, where every request passes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from rest_framework.exceptions import (
    MethodNotAllowed,
    NotAcceptable,
    NotAuthenticated,
    UnsupportedMediaType,
)
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from gateway.access.authentication import authenticate_request
from gateway.http.errors import error_answer, error_headers
from gateway.http.parsers import read_json_body
from gateway.http.renderers import wants_plain_json
from jobs.metrics import count_answer

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
JSON = "application/json"

Handler = Callable[..., "Answer"]


@dataclass(frozen=True)
class Answer:
    """What a handler answers, before it is rendered."""

    body: dict[str, Any]
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)


def _json_media_type(request: HttpRequest) -> str | None:
    """The accepted media type the answer is JSON of, with its parameters (``indent=2`` shapes
    the rendering); None when the Accept header allows no JSON."""
    if wants_plain_json(request.META):
        return JSON
    for accepted in request.accepted_types:  # most preferred first
        if accepted.main_type in ("*", "application") and accepted.sub_type in ("*", "json"):
            return str(accepted) if accepted.sub_type == "json" else JSON
    return None


def _is_json(content_type: str) -> bool:
    return content_type == JSON or content_type.partition(";")[0].strip().lower() == JSON


class JobEndpoint(APIView):
    """A view whose handlers (``get``, ``post``) take ``(request, principal, data, **kwargs)``,
    where ``data`` is the parsed JSON body (None for a method without one), and return an
    ``Answer``."""

    _renderer = JSONRenderer()
    takes_body = True  # False: a POST's body, if any, is not read (a bare action, like a cancel)
    # The answers' counter labels (gateway_api_requests_total): what the view does, to what.
    operation = "list"
    metric_request_type = "all"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        self.request = request  # type: ignore[assignment]  # what error descriptions may read
        self.args, self.kwargs = args, kwargs
        media_type = _json_media_type(request)
        try:
            if media_type is None:
                raise NotAcceptable()
            answer = self._answer(request, kwargs)
        except Exception as exc:
            error = error_answer(exc, self)
            if error is None:
                raise  # a bug: Django's 500 handler answers
            body, status = error
            answer = Answer(body, status, error_headers(status, exc))
        response = HttpResponse(
            self._renderer.render(answer.body, None if media_type == JSON else media_type),
            status=answer.status,
            content_type=JSON,
        )
        for name, value in answer.headers.items():
            response[name] = value
        response["Allow"] = ", ".join(self.allowed_methods)
        count_answer(self.operation, self.metric_request_type, answer.status)
        return response

    def _answer(self, request: HttpRequest, kwargs: dict[str, Any]) -> Answer:
        principal = authenticate_request(request.META)
        if principal is None:
            raise NotAuthenticated()
        method = request.method or ""
        if method == "OPTIONS":
            return self.metadata()
        handler: Handler | None = None
        if method.lower() in self.http_method_names:
            handler = getattr(self, method.lower(), None)
        if handler is None:
            raise MethodNotAllowed(method)
        data = None
        if method in BODY_METHODS and self.takes_body:
            content_type = request.META.get("CONTENT_TYPE", "")
            if not _is_json(content_type):
                raise UnsupportedMediaType(content_type)
            data = read_json_body(request, request.META.get("CONTENT_LENGTH"))
        return handler(request, principal, data, **kwargs)

    def metadata(self) -> Answer:
        """OPTIONS: what the view is, and what it takes and answers."""
        return Answer(
            {
                "name": self.get_view_name(),
                "description": self.get_view_description(),
                "renders": [JSON],
                "parses": [JSON],
            },
            200,
        )
