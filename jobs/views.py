"""The async completions API: submit a job, poll it. Views only translate HTTP."""

from __future__ import annotations

import functools
from typing import Any
from uuid import UUID

from django.http import HttpRequest
from django.urls import get_script_prefix, reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from gateway.access.principals import Principal
from gateway.http.error_schema import ErrorSerializer
from jobs import services
from jobs.fastpath import Answer, FastPathView
from jobs.models import TERMINAL_STATUSES, RequestType
from jobs.quick_validation import validate_completion_request
from jobs.selectors import get_visible_job
from jobs.serializers import AsyncJobSerializer, CompletionRequestSerializer
from jobs.ttl import TTL_HEADER, result_ttl_from

ERRORS = {
    code: OpenApiResponse(ErrorSerializer, description=text)
    for code, text in {
        400: "Invalid request (names the param or header)",
        401: "Missing or invalid key or token",
        403: "The key may not use this model",
        404: "No such job for this caller",
        406: "The Accept header allows no JSON answer",
        413: "Request body too large",
        415: "The body is not application/json",
        503: "Database unavailable",
    }.items()
}


def poll_location(request: HttpRequest, job_id: UUID) -> str:
    """The absolute URL a job is polled at (the ``Location`` of a 202)."""
    return request.build_absolute_uri(_poll_path_prefix(get_script_prefix()) + str(job_id))


@functools.lru_cache(maxsize=16)
def _poll_path_prefix(script_prefix: str) -> str:
    # Poll paths differ only in their last segment; reversing the URLconf for every submit
    # costs more than the INSERT's SQL. Keyed by the script prefix reverse() itself uses.
    placeholder = "00000000-0000-0000-0000-000000000000"
    return reverse("poll-completion", args=[placeholder]).removesuffix(placeholder)


class SubmitCompletionView(FastPathView):
    request_type = RequestType.TEXT_COMPLETION.value
    model_requested: str | None = None  # named in errors once the body is parsed
    fast_methods = frozenset({"POST"})

    @extend_schema(
        operation_id="create_async_completion",
        summary="Create async text completion",
        description="Submits a text completion request for asynchronous execution. Returns a job "
        "id at once with HTTP 202; poll the Location URL for the result. Streaming is not "
        "supported for async requests.",
        request=CompletionRequestSerializer,
        parameters=[
            OpenApiParameter(
                TTL_HEADER,
                int,
                OpenApiParameter.HEADER,
                description="Seconds the result is kept after completion (default 3600).",
            )
        ],
        responses={202: AsyncJobSerializer, **{k: v for k, v in ERRORS.items() if k != 404}},
    )
    def post(self, request: Request) -> Response:
        return self.answer(request)

    def handle(
        self, request: HttpRequest, principal: Principal, data: Any, **kwargs: Any
    ) -> Answer:
        model = data.get("model") if isinstance(data, dict) else None
        self.model_requested = model if isinstance(model, str) and "/" in model else None
        result_ttl = result_ttl_from(request)
        valid = validate_completion_request(data, principal)
        job = services.submit_job(
            principal=principal,
            request_type=RequestType.TEXT_COMPLETION,
            provider=valid["primary"].provider,
            model=valid["primary"].model,
            fallbacks=valid["fallbacks"],
            request=valid["params"],
            result_ttl=result_ttl,
        )
        return Answer(
            AsyncJobSerializer.render(job), 202, {"Location": poll_location(request, job.id)}
        )


class PollCompletionView(FastPathView):
    request_type = RequestType.TEXT_COMPLETION.value
    fast_methods = frozenset({"GET"})

    @extend_schema(
        operation_id="get_async_completion",
        summary="Get async text completion job",
        description="202 while the job is pending or processing; 200 once it is completed or "
        "failed (a failed job carries status_code and error).",
        responses={
            200: AsyncJobSerializer,
            202: AsyncJobSerializer,
            **{k: v for k, v in ERRORS.items() if k in (401, 404, 406, 503)},
        },
    )
    def get(self, request: Request, job_id: str) -> Response:
        return self.answer(request, job_id=job_id)

    def handle(
        self, request: HttpRequest, principal: Principal, data: Any, **kwargs: Any
    ) -> Answer:
        job = get_visible_job(kwargs["job_id"], principal, RequestType.TEXT_COMPLETION)
        done = job.status in TERMINAL_STATUSES
        return Answer(AsyncJobSerializer.render(job), 200 if done else 202)
