"""What the job API answers: a job, as submits and polls return it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework import serializers

from gateway.http.error_schema import ErrorSerializer
from jobs.models import AsyncJob, JobStatus

if TYPE_CHECKING:
    from jobs.sql import PolledJob


def rfc3339(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


class AsyncJobSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=JobStatus.choices)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    status_code = serializers.IntegerField(allow_null=True)
    result = serializers.JSONField(
        allow_null=True,
        help_text="The OpenAI result of the route's request type: a text_completion, "
        "a chat.completion, a response or a list of embeddings.",
    )
    error = ErrorSerializer(allow_null=True)

    @staticmethod
    def render(job: AsyncJob | PolledJob) -> dict[str, Any]:
        return {
            "id": str(job.id),
            "status": job.status,
            "created_at": rfc3339(job.created_at),
            "expires_at": rfc3339(job.expires_at),
            "completed_at": rfc3339(job.completed_at),
            "status_code": job.status_code,
            "result": job.result,
            "error": job.error,
        }
