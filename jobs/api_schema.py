"""How the job views appear in the OpenAPI document, from each view's request type declaration.

One submit view and one poll view serve every request type, so what drf-spectacular would read
from per-view decorators is read here from ``view.kind`` instead.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from gateway.http.error_schema import ErrorSerializer
from jobs.idempotency import IDEMPOTENCY_HEADER, MAX_KEY_LENGTH
from jobs.request_types import RequestKind
from jobs.serializers import AsyncJobSerializer
from jobs.ttl import TTL_HEADER
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
    410: OpenApiResponse(
        ErrorSerializer,
        description=f"The job this {IDEMPOTENCY_HEADER} made has expired; use a new key",
    ),
    422: OpenApiResponse(
        ErrorSerializer,
        description=f"This {IDEMPOTENCY_HEADER} was used with another request in the last 24 h",
    ),
}
POLL_ERRORS = {code: answer for code, answer in ERRORS.items() if code in (401, 404, 406, 503)}


class JobOperationSchema(AutoSchema):
    """The submit (POST) or poll (GET) operation of the view's request type."""

    @property
    def _kind(self) -> RequestKind:
        kind: RequestKind = self.view.kind  # type: ignore[attr-defined]  # a JobView's
        return kind

    @property
    def _submits(self) -> bool:
        return self.method == "POST"

    def get_operation_id(self) -> str:
        verb = "create" if self._submits else "get"
        return f"{verb}_async_{self._kind.name}"

    def get_summary(self) -> str:
        title = self._kind.title
        return f"Create async {title}" if self._submits else f"Get async {title} job"

    def get_description(self) -> str:  # type: ignore[override]
        kind = self._kind
        if self._submits:
            return (
                f"Submits a {kind.title} request for asynchronous execution. Returns a job id at "
                "once with HTTP 202; poll the Location URL for the result, an OpenAI "
                f"`{kind.result_type}`. Streaming is not supported for async requests."
            )
        return (
            "202 while the job is pending or processing; 200 once it is completed (its result "
            f"an OpenAI `{kind.result_type}`) or failed (with status_code and error)."
        )

    def get_tags(self) -> list[str]:
        return [f"async {self._kind.title}s"]

    def get_request_serializer(self) -> Any:
        return self._kind.schema if self._submits else None

    def get_response_serializers(self) -> Any:
        if self._submits:
            return {202: AsyncJobSerializer, **SUBMIT_ERRORS}
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
