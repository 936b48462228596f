"""What the job API answers: a job, as submits, polls and cancels return it, and the job list."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework import serializers

from gateway.http.error_schema import ErrorSerializer
from jobs.models import AsyncJob, JobStatus, RequestType

if TYPE_CHECKING:
    from jobs.selectors import JobPage
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


class ListedJobSerializer(AsyncJobSerializer):
    """A job in the list: the poll's body, and which request type it is (its poll route)."""

    request_type = serializers.ChoiceField(choices=RequestType.choices)

    @staticmethod
    def render(job: AsyncJob | PolledJob) -> dict[str, Any]:
        return {**AsyncJobSerializer.render(job), "request_type": job.request_type}


class JobListSerializer(serializers.Serializer):
    """OpenAI's list shape; ``after=last_id`` asks for the next page while ``has_more``."""

    object = serializers.ChoiceField(choices=["list"])
    # A field named like Serializer.data: DRF's metaclass takes declared fields off the class.
    data = ListedJobSerializer(many=True)  # type: ignore[assignment]
    first_id = serializers.UUIDField(allow_null=True)
    last_id = serializers.UUIDField(allow_null=True)
    has_more = serializers.BooleanField()

    @staticmethod
    def render(page: JobPage) -> dict[str, Any]:
        data = [ListedJobSerializer.render(job) for job in page.jobs]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": page.has_more,
        }
