from __future__ import annotations

import uuid

from django.db import models

from gateway.access.models import VirtualKey


class JobStatus(models.TextChoices):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
# What a cancel may stop: a job not yet claimed, or one a worker is running.
ACTIVE_STATUSES = (JobStatus.PENDING, JobStatus.PROCESSING)


class RequestType(models.TextChoices):
    TEXT_COMPLETION = "text_completion"
    CHAT_COMPLETION = "chat_completion"
    RESPONSES = "responses"
    EMBEDDING = "embedding"


class AsyncJob(models.Model):
    """One accepted request. The row is the record; the broker message only points at it.

    Life: pending -> processing (claimed by one worker under a lease) -> completed | failed;
    pending or processing -> cancelled when its caller cancels it. A terminal state is written
    once (every write to one is conditional on the state before it). ``expires_at`` is
    ``completed_at + result_ttl``.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    request_type = models.CharField(max_length=32, choices=RequestType.choices)
    virtual_key = models.ForeignKey(
        VirtualKey,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
        help_text="The key that submitted the job; empty for an admin JWT.",
    )
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING)
    provider = models.CharField(max_length=100)
    model = models.CharField(max_length=300)
    fallbacks = models.JSONField(default=list, blank=True)
    request = models.JSONField(help_text="The validated parameters sent upstream.")
    result_ttl = models.PositiveIntegerField()

    attempts = models.PositiveSmallIntegerField(default=0, help_text="Times a worker claimed it.")
    claimed_by = models.CharField(max_length=200, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["expires_at"], name="job_expires_at_idx"),
            models.Index(fields=["status", "dispatched_at"], name="job_status_dispatched_idx"),
            models.Index(fields=["status", "lease_expires_at"], name="job_status_lease_idx"),
            # The job list, newest first, a key's own (first) or everyone's (an admin's), with
            # the id breaking ties so that the ``after`` cursor is a position in one order.
            models.Index(fields=["virtual_key", "-created_at", "-id"], name="job_key_list_idx"),
            models.Index(fields=["-created_at", "-id"], name="job_list_idx"),
            # The engines' queue: pending jobs, oldest first.
            models.Index(
                fields=["created_at"],
                condition=models.Q(status="pending"),
                name="job_pending_created_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.request_type} {self.id} ({self.status})"

    @property
    def model_requested(self) -> str:
        return f"{self.provider}/{self.model}"
