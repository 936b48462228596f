from __future__ import annotations

import uuid

from django.db import models
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

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


# The claim's groups (jobs/sql.py: claim_pending): a job's key, or 0 for jobs without one.
KEY_GROUP = Coalesce("virtual_key", Value(0), output_field=models.BigIntegerField())


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
    # A field's db_default (or a null column's NULL) lets the submit's INSERT leave the column
    # to the database when the job holds that value (jobs/sql.py: insert_job).
    status = models.CharField(
        max_length=16,
        choices=JobStatus.choices,
        default=JobStatus.PENDING,
        db_default=JobStatus.PENDING.value,
    )
    provider = models.CharField(max_length=100)
    model = models.CharField(max_length=300)
    fallbacks = models.JSONField(default=list, blank=True)
    request = models.JSONField(help_text="The validated parameters sent upstream.")
    result_ttl = models.PositiveIntegerField()

    attempts = models.PositiveSmallIntegerField(
        default=0, db_default=0, help_text="Times a worker claimed it."
    )
    counted = models.BooleanField(
        default=False,
        help_text="Submitted under its key's limits: holds one of the key's pending slots while "
        "pending or processing, and its tokens count toward the key's minute when it finishes.",
    )
    claimed_by = models.CharField(max_length=200, blank=True, default="", db_default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    tries = models.JSONField(
        default=list,
        db_default=[],
        blank=True,
        help_text="Earlier tries' outcomes, oldest first: each retry keeps the one it ends.",
    )

    cost_usd = models.DecimalField(
        max_digits=20,
        decimal_places=10,
        null=True,
        blank=True,
        help_text="What the job was charged when it completed (jobs/charges.py); empty when it "
        "was not charged (failed, cancelled, not finished).",
    )
    unpriced = models.BooleanField(
        default=False,
        db_default=False,  # rows written by a version without this column stay valid
        help_text="Charged 0: no price is known for the model that served it.",
    )

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
            # The engines' queue (jobs/sql.py: claim_pending): pending jobs per key, oldest
            # first, and the jobs each key has processing. Jobs without a key are group 0.
            models.Index(
                KEY_GROUP,
                F("created_at"),
                condition=models.Q(status="pending"),
                name="job_pending_group_idx",
            ),
            models.Index(
                KEY_GROUP, condition=models.Q(status="processing"), name="job_processing_group_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.request_type} {self.id} ({self.status})"

    @property
    def model_requested(self) -> str:
        return f"{self.provider}/{self.model}"


class IdempotencyKey(models.Model):
    """An ``Idempotency-Key`` a caller sent with a submit, and the job that submit made.

    For ``jobs.idempotency.IDEMPOTENCY_WINDOW`` after ``created_at`` the same key from the same
    caller answers that job again instead of making another (``jobs/idempotency.py``). The row
    is written in the transaction that inserts the job, and the unique constraints below are what
    makes two submits racing with one key make one job, across processes and hosts.

    ``job`` has no database constraint, on purpose: a job is purged when its result TTL ends,
    usually long before its key's window does, and the key must then still refuse to make a new
    job (it answers 410). The job purge deletes jobs by row address and never looks here.
    """

    virtual_key = models.ForeignKey(
        VirtualKey,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,  # the unique constraint's index starts with it
        help_text="The key the submit came with; empty for an admin JWT (one scope for all).",
    )
    key = models.CharField(max_length=255, help_text="The header's value, unquoted.")
    fingerprint = models.CharField(
        max_length=64,
        help_text="SHA-256 of the request type, the result TTL and the body's canonical JSON.",
    )
    job = models.ForeignKey(
        AsyncJob,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,  # never looked up by job
        related_name="+",
        help_text="The job the first submit made; it may have been purged since.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            # Two partial constraints rather than one with nulls_distinct=False, which SQLite
            # cannot enforce (Django would leave the constraint out there).
            models.UniqueConstraint(
                fields=["virtual_key", "key"],
                condition=models.Q(virtual_key__isnull=False),
                name="idempotency_key_per_virtual_key",
            ),
            models.UniqueConstraint(
                fields=["key"],
                condition=models.Q(virtual_key__isnull=True),
                name="idempotency_key_per_admin",
            ),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_idx")]

    def __str__(self) -> str:
        return f"idempotency key for job {self.job_id}"


class KeyCounters(models.Model):
    """What a virtual key's limits are checked against (jobs/limits.py): one row per key, made
    by its first submit under limits.

    ``pending``: the key's counted jobs (``AsyncJob.counted``) now pending or processing.
    ``requests``: submits accepted in the clock minute ``request_minute`` (minutes since the
    Unix epoch, UTC). ``tokens``: tokens (prompt + completion) used by jobs that finished in the
    minute ``token_minute``. A counter whose minute has passed counts as zero.

    Plain integers, not positive ones: a check constraint here could refuse a finish's
    transaction, and a job must always be able to end.
    """

    virtual_key = models.OneToOneField(
        VirtualKey, primary_key=True, on_delete=models.CASCADE, related_name="counters"
    )
    pending = models.IntegerField(default=0)
    request_minute = models.BigIntegerField(default=0)
    requests = models.IntegerField(default=0)
    token_minute = models.BigIntegerField(default=0)
    tokens = models.BigIntegerField(default=0)

    class Meta:
        verbose_name_plural = "key counters"

    def __str__(self) -> str:
        return f"counters of key {self.virtual_key_id}"


class WorkerHeartbeat(models.Model):
    """A running job engine, as last seen: each writes its row every few seconds while it runs
    and deletes it when it stops; ``/ready`` asks whether any was seen lately."""

    worker_id = models.CharField(max_length=200, primary_key=True)
    seen_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.worker_id} (seen {self.seen_at:%Y-%m-%d %H:%M:%S})"
