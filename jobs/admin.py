from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from jobs import services
from jobs.models import AsyncJob, JobStatus


def _pretty(value: Any) -> str:
    if value is None:
        return "-"
    return format_html(
        "<pre style='white-space: pre-wrap'>{}</pre>",
        json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True),
    )


@admin.register(AsyncJob)
class AsyncJobAdmin(admin.ModelAdmin):
    """An ops console: find a job by id, see what was asked and what came back, retry it."""

    list_display = [
        "id",
        "request_type",
        "status",
        "status_code",
        "provider",
        "model",
        "virtual_key",
        "attempts",
        "created_at",
        "completed_at",
        "expires_at",
    ]
    list_filter = ["status", "request_type", "provider", "virtual_key"]
    search_fields = ["id"]
    search_help_text = "Search by job id"
    list_select_related = ["virtual_key"]
    date_hierarchy = "created_at"
    actions = ["retry_failed"]
    readonly_fields = [
        "id",
        "request_type",
        "virtual_key",
        "status",
        "provider",
        "model",
        "fallbacks",
        "result_ttl",
        "attempts",
        "counted",
        "claimed_by",
        "lease_expires_at",
        "dispatched_at",
        "created_at",
        "started_at",
        "completed_at",
        "expires_at",
        "status_code",
        "request_pretty",
        "result_pretty",
        "error_pretty",
    ]
    exclude = ["request", "result", "error"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="request")
    def request_pretty(self, obj: AsyncJob) -> str:
        return _pretty(obj.request)

    @admin.display(description="result")
    def result_pretty(self, obj: AsyncJob) -> str:
        return _pretty(obj.result)

    @admin.display(description="error")
    def error_pretty(self, obj: AsyncJob) -> str:
        return _pretty(obj.error)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AsyncJob], search_term: str
    ) -> tuple[QuerySet[AsyncJob], bool]:
        # An id that is not a UUID matches nothing, instead of raising a validation error.
        term = search_term.strip()
        if term:
            try:
                return queryset.filter(pk=uuid.UUID(term)), False
            except ValueError:
                return queryset.none(), False
        return queryset, False

    @admin.action(description="Retry selected failed jobs", permissions=["change"])
    def delete_model(self, request: HttpRequest, obj: AsyncJob) -> None:
        services.delete_jobs(AsyncJob.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AsyncJob]) -> None:
        services.delete_jobs(queryset)

    def retry_failed(self, request: HttpRequest, queryset: QuerySet[AsyncJob]) -> None:
        retried = sum(services.retry_job(job) for job in queryset.filter(status=JobStatus.FAILED))
        self.message_user(request, f"{retried} failed job(s) sent back to the queue.")
