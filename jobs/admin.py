from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import DurationField, ExpressionWrapper, F, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.html import format_html, format_html_join

from jobs import services
from jobs.dashboard import job_activity
from jobs.models import AsyncJob, JobStatus

# Text and background of each status's badge.
STATUS_COLOURS: dict[str, tuple[str, str]] = {
    JobStatus.PENDING: ("#664d03", "#fff3cd"),
    JobStatus.PROCESSING: ("#084298", "#cfe2ff"),
    JobStatus.COMPLETED: ("#0f5132", "#d1e7dd"),
    JobStatus.FAILED: ("#842029", "#f8d7da"),
    JobStatus.CANCELLED: ("#41464b", "#e2e3e5"),
}
SHORT_ID_LENGTH = 8
_HEX_PREFIX = re.compile(r"[0-9a-f]{1,32}")

# The index page gains a link to the dashboard (templates/admin/jobs/index.html).
admin.site.index_template = "admin/jobs/index.html"


def _pretty(value: Any) -> str:
    if value is None:
        return "-"
    return format_html(
        "<pre style='white-space: pre-wrap'>{}</pre>",
        json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True),
    )


def status_badge(status: str) -> str:
    colour, background = STATUS_COLOURS.get(status, ("#212529", "#ffffff"))
    return format_html(
        "<span class='job-status job-status-{}' style='color: {}; background: {}; "
        "padding: 2px 8px; border-radius: 8px; font-weight: 600'>{}</span>",
        status,
        colour,
        background,
        status,
    )


def format_duration(delta: timedelta | None) -> str:
    if delta is None:
        return "-"
    seconds = delta.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _between(start: datetime | None, end: datetime | None) -> timedelta | None:
    return end - start if start is not None and end is not None else None


def id_prefix_range(term: str) -> Q | None:
    """Jobs whose id starts with ``term`` (hex digits, hyphens ignored), as a range on the key.

    A range rather than a text match, so that the primary key's index finds them on Postgres
    (a ``uuid`` column) and SQLite (hex text) alike.
    """
    digits = term.lower().replace("-", "")
    if not _HEX_PREFIX.fullmatch(digits):
        return None
    return Q(pk__gte=uuid.UUID(digits.ljust(32, "0")), pk__lte=uuid.UUID(digits.ljust(32, "f")))


def _moment(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S %Z")


def _error_summary(error: Any) -> str:
    if not error:
        return "-"
    detail = error.get("error") if isinstance(error, dict) else None
    if isinstance(detail, dict) and "message" in detail:
        return f"{detail.get('code') or detail.get('type') or 'error'}: {detail['message']}"
    return json.dumps(error, ensure_ascii=False, sort_keys=True)


@admin.register(AsyncJob)
class AsyncJobAdmin(admin.ModelAdmin):
    """An ops console: find a job by id or model, see what was asked and what came back, how
    long it waited and ran, every try it had, and retry it."""

    list_display = [
        "short_id",
        "request_type",
        "status_badge",
        "status_code",
        "provider",
        "model",
        "virtual_key",
        "attempts",
        "created_at",
        "queue_wait",
        "run_time",
    ]
    list_filter = ["status", "request_type", "provider", "virtual_key"]
    search_fields = ["id", "model"]
    search_help_text = "Search by job id (or its first characters) or by model (any part of it)"
    list_select_related = ["virtual_key"]
    date_hierarchy = "created_at"
    actions = ["retry_failed"]
    readonly_fields = [
        "id",
        "request_type",
        "virtual_key",
        "status_badge",
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
        "queue_wait",
        "run_time",
        "expires_at",
        "status_code",
        "tries_table",
        "request_pretty",
        "result_pretty",
        "error_pretty",
    ]
    exclude = ["request", "result", "error", "status", "tries"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[AsyncJob]:
        # The durations as columns, so that the list can be sorted by them.
        return (
            super()
            .get_queryset(request)
            .annotate(
                queue_wait_time=ExpressionWrapper(
                    F("started_at") - F("created_at"), output_field=DurationField()
                ),
                run_time_taken=ExpressionWrapper(
                    F("completed_at") - F("started_at"), output_field=DurationField()
                ),
            )
        )

    @admin.display(description="id", ordering="id")
    def short_id(self, obj: AsyncJob) -> str:
        return format_html("<code title='{}'>{}</code>", obj.id, str(obj.id)[:SHORT_ID_LENGTH])

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: AsyncJob) -> str:
        return status_badge(obj.status)

    @admin.display(description="queue wait", ordering="queue_wait_time")
    def queue_wait(self, obj: AsyncJob) -> str:
        return format_duration(_between(obj.created_at, obj.started_at))

    @admin.display(description="run time", ordering="run_time_taken")
    def run_time(self, obj: AsyncJob) -> str:
        return format_duration(_between(obj.started_at, obj.completed_at))

    @admin.display(description="tries")
    def tries_table(self, obj: AsyncJob) -> str:
        outcomes = [*obj.tries, services.try_outcome(obj)]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td><td>{}</td></tr>",
            (
                (
                    number,
                    status_badge(outcome["status"]),
                    outcome["status_code"] or "-",
                    _error_summary(outcome["error"]),
                    outcome["attempts"],
                    _moment(outcome["started_at"]),
                    _moment(outcome["completed_at"]),
                    _moment(outcome["retried_at"]),
                )
                for number, outcome in enumerate(outcomes, start=1)
            ),
        )
        return format_html(
            "<table class='job-tries'><thead><tr><th>try</th><th>status</th><th>code</th>"
            "<th>error</th><th>claims</th><th>started</th><th>ended</th><th>retried</th>"
            "</tr></thead><tbody>{}</tbody></table>",
            rows,
        )

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
        term = search_term.strip()
        if not term:
            return queryset, False
        matches = Q(model__icontains=term)
        by_id = id_prefix_range(term)
        if by_id is not None:
            matches |= by_id
        return queryset.filter(matches), False

    @admin.action(description="Retry selected failed jobs", permissions=["change"])
    def delete_model(self, request: HttpRequest, obj: AsyncJob) -> None:
        services.delete_jobs(AsyncJob.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AsyncJob]) -> None:
        services.delete_jobs(queryset)

    def retry_failed(self, request: HttpRequest, queryset: QuerySet[AsyncJob]) -> None:
        retried = sum(services.retry_job(job) for job in queryset.filter(status=JobStatus.FAILED))
        self.message_user(request, f"{retried} failed job(s) sent back to the queue.")

    def get_urls(self) -> list[URLPattern]:
        dashboard = path(
            "dashboard/",
            self.admin_site.admin_view(self.dashboard_view),
            name="jobs_asyncjob_dashboard",
        )
        return [dashboard, *super().get_urls()]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        activity = job_activity()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Jobs in the last hour",
            "activity": activity,
            "statuses": [
                (status, status_badge(status), activity.by_status[status])
                for status in JobStatus.values
            ],
            "status_names": JobStatus.values,
            "providers": [
                (row.provider, [row.by_status.get(s, 0) for s in JobStatus.values], row.total)
                for row in activity.providers
            ],
            "run_p50": _seconds(activity.run_time.p50),
            "run_p95": _seconds(activity.run_time.p95),
            "wait_p50": _seconds(activity.queue_wait.p50),
            "wait_p95": _seconds(activity.queue_wait.p95),
            "error_rate": "-"
            if activity.error_rate is None
            else f"{activity.error_rate * 100:.1f} %",
        }
        return TemplateResponse(request, "admin/jobs/asyncjob/dashboard.html", context)


def _seconds(value: float | None) -> str:
    return format_duration(None if value is None else timedelta(seconds=value))
