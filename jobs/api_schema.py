"""How the job views appear in the OpenAPI document, from each view's request type declaration.

One submit, one poll and one cancel view serve every request type, so what drf-spectacular
would read from per-view decorators is read here from ``view.kind`` and ``view.operation``
instead. The job list is one route for every type.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from gateway.http.error_schema import ErrorSerializer
from jobs.idempotency import IDEMPOTENCY_HEADER, MAX_KEY_LENGTH
from jobs.listing import DEFAULT_LIMIT, MAX_LIMIT
from jobs.models import JobStatus, RequestType
from jobs.request_types import RequestKind
from jobs.serializers import AsyncJobSerializer, JobListSerializer
from jobs.ttl import TTL_HEADER
from jobs.usage import UsageSerializer
from jobs.webhooks.header import WEBHOOK_HEADER

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
SUBMIT_ERRORS = {
    **{code: answer for code, answer in ERRORS.items() if code != 404},
    402: OpenApiResponse(
        ErrorSerializer,
        description="The key's budget for the period is spent (budget_exceeded); no job is made",
    ),
    410: OpenApiResponse(
        ErrorSerializer,
        description=f"The job this {IDEMPOTENCY_HEADER} made has expired; use a new key",
    ),
    422: OpenApiResponse(
        ErrorSerializer,
        description=f"This {IDEMPOTENCY_HEADER} was used with another request in the last 24 h",
    ),
    429: OpenApiResponse(
        ErrorSerializer,
        description="A limit of the key is reached (rate_limit_exceeded, "
        "token_rate_limit_exceeded, too_many_pending_jobs); Retry-After gives the seconds to "
        "wait",
    ),
}
POLL_ERRORS = {code: answer for code, answer in ERRORS.items() if code in (401, 404, 406, 503)}
CANCEL_ERRORS = {
    **POLL_ERRORS,
    409: OpenApiResponse(
        ErrorSerializer, description="The job has already ended (job_not_cancellable)"
    ),
}
LIST_ERRORS = {code: answer for code, answer in ERRORS.items() if code in (400, 401, 406, 503)}
USAGE_ERRORS = {
    **{code: answer for code, answer in ERRORS.items() if code in (400, 401, 406, 503)},
    404: OpenApiResponse(
        ErrorSerializer, description="No such key for this caller (another key's name, or none)"
    ),
}


class JobOperationSchema(AutoSchema):
    """The submit (POST), poll (GET) or cancel (POST .../cancel) operation of the view's type."""

    @property
    def _kind(self) -> RequestKind:
        kind: RequestKind = self.view.kind  # type: ignore[attr-defined]  # a JobView's
        return kind

    @property
    def _operation(self) -> str:
        operation: str = self.view.operation  # type: ignore[attr-defined]  # a JobView's
        return operation

    @property
    def _submits(self) -> bool:
        return self._operation == "submit"

    def get_operation_id(self) -> str:
        verb = {"submit": "create", "poll": "get", "cancel": "cancel"}[self._operation]
        return f"{verb}_async_{self._kind.name}"

    def get_summary(self) -> str:
        title = self._kind.title
        return {
            "submit": f"Create async {title}",
            "poll": f"Get async {title} job",
            "cancel": f"Cancel async {title} job",
        }[self._operation]

    def get_description(self) -> str:  # type: ignore[override]
        kind = self._kind
        if self._submits:
            return (
                f"Submits a {kind.title} request for asynchronous execution. Returns a job id at "
                "once with HTTP 202; poll the Location URL for the result, an OpenAI "
                f"`{kind.result_type}`. Streaming is not supported for async requests."
            )
        if self._operation == "cancel":
            return (
                "Cancels a pending or processing job: it is never sent upstream, or its upstream "
                "call is stopped, and it is `cancelled` from now on (a terminal state, kept for "
                "its result TTL like any other). 409 when the job has already ended. No body."
            )
        return (
            "202 while the job is pending or processing, with `Retry-After`: the seconds to wait "
            "before polling again (1 while the job is younger than 10 s, then a tenth of its "
            "age, at most 60); 200 once it is completed (its result "
            f"an OpenAI `{kind.result_type}`), failed (with status_code and error) or cancelled."
        )

    def get_tags(self) -> list[str]:
        return [f"async {self._kind.title}s"]

    def get_request_serializer(self) -> Any:
        return self._kind.schema if self._submits else None

    def get_response_serializers(self) -> Any:
        if self._submits:
            return {202: AsyncJobSerializer, **SUBMIT_ERRORS}
        if self._operation == "cancel":
            return {200: AsyncJobSerializer, **CANCEL_ERRORS}
        return {200: AsyncJobSerializer, 202: AsyncJobSerializer, **POLL_ERRORS}

    def get_examples(self) -> list[OpenApiExample]:
        """The schema's own examples, as request examples of the submit."""
        if not self._submits:
            return []
        examples = self._kind.schema.model_json_schema().get("examples", [])
        return [
            OpenApiExample(f"Example {number}", value=value, request_only=True)
            for number, value in enumerate(examples, start=1)
        ]

    def get_override_parameters(self) -> list[Any]:
        if not self._submits:
            return []
        return [
            OpenApiParameter(
                TTL_HEADER,
                int,
                OpenApiParameter.HEADER,
                description="Seconds the result is kept after completion (default 3600).",
            ),
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                str,
                OpenApiParameter.HEADER,
                description=(
                    f"Makes retries safe: 1 to {MAX_KEY_LENGTH} printable ASCII characters, sent "
                    'as a quoted string (`"abc"`) or bare (`abc`). Within 24 hours, a submit '
                    "with the same key, route, body and result TTL answers the first submit's "
                    "job as it is now (202, the same Location, `Idempotent-Replayed: true`) "
                    "and runs nothing; another request with the key is a 422, and a key whose "
                    "job has expired a 410. Keys are per virtual key (all admin tokens share "
                    "one scope)."
                ),
            ),
            OpenApiParameter(
                WEBHOOK_HEADER,
                str,
                OpenApiParameter.HEADER,
                description=(
                    "The name of a webhook endpoint an admin registered: when the job ends it "
                    "receives a signed POST (Standard Webhooks) with the job as a poll answers "
                    "it. An unknown or inactive endpoint, or one bound to another virtual key, "
                    "is a 400."
                ),
            ),
        ]


class JobListSchema(AutoSchema):
    """``GET /v1/async/jobs``: the caller's jobs of every type, in OpenAI's list shape."""

    def get_operation_id(self) -> str:
        return "list_async_jobs"

    def get_summary(self) -> str:
        return "List async jobs"

    def get_description(self) -> str:  # type: ignore[override]
        return (
            "The caller's unexpired jobs, newest first (an admin token: every key's). Pass "
            "`after=<last_id>` for the next page while `has_more` is true. Each item is the "
            "job as its poll answers it, plus its `request_type`. A bad or unknown query "
            "parameter is a 400 naming it; an `after` that is not one of the caller's jobs is "
            "a 400 (`invalid_cursor`)."
        )

    def get_tags(self) -> list[str]:
        return ["async jobs"]

    def get_request_serializer(self) -> Any:
        return None

    def get_response_serializers(self) -> Any:
        return {200: JobListSerializer, **LIST_ERRORS}

    def get_override_parameters(self) -> list[Any]:
        return [
            OpenApiParameter(
                "limit",
                int,
                OpenApiParameter.QUERY,
                description=f"Jobs per page, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}).",
            ),
            OpenApiParameter(
                "after",
                str,
                OpenApiParameter.QUERY,
                description="A job id: list the jobs older than it.",
            ),
            OpenApiParameter("status", str, OpenApiParameter.QUERY, enum=JobStatus.values),
            OpenApiParameter("request_type", str, OpenApiParameter.QUERY, enum=RequestType.values),
            OpenApiParameter(
                "key",
                str,
                OpenApiParameter.QUERY,
                description="Admin token only: one virtual key's jobs, by name.",
            ),
        ]


class UsageSchema(AutoSchema):
    """``GET /v1/usage``: a key's spend and usage in its current budget period."""

    def get_operation_id(self) -> str:
        return "get_usage"

    def get_summary(self) -> str:
        return "Get a key's spend and usage"

    def get_description(self) -> str:  # type: ignore[override]
        return (
            "The key's spend (USD, as decimal strings) and usage in its current budget period "
            "(UTC day, ISO week from Monday, calendar month, or `total` since the key was "
            "created; `total` for a key without a budget), in all and per model that served "
            "its jobs. A job is counted when it completes. A virtual key reads its own usage; "
            "an admin token names the key with `key`."
        )

    def get_tags(self) -> list[str]:
        return ["usage"]

    def get_request_serializer(self) -> Any:
        return None

    def get_response_serializers(self) -> Any:
        return {200: UsageSerializer, **USAGE_ERRORS}

    def get_override_parameters(self) -> list[Any]:
        return [
            OpenApiParameter(
                "key",
                str,
                OpenApiParameter.QUERY,
                description="The virtual key's name: required with an admin token; a virtual "
                "key may name only itself.",
            )
        ]
