"""Webhook endpoints admins register, and the deliveries that tell them a job has ended."""

from __future__ import annotations

import uuid

from django.db import models

from gateway.access.models import VirtualKey
from jobs.models import AsyncJob
from providers import crypto


class WebhookEndpoint(models.Model):
    """A URL that receives signed notices (Standard Webhooks) when jobs that name it end.

    The signing secret (``whsec_…``) is shown once, when the endpoint is made, and kept
    encrypted as provider keys are (``providers/crypto.py``); only its prefix is shown after.
    """

    name = models.CharField(
        max_length=100, unique=True, help_text="What a submit's x-bf-async-webhook header names."
    )
    url = models.URLField(max_length=1000, help_text="An http(s) URL the notices are POSTed to.")
    virtual_key = models.ForeignKey(
        VirtualKey,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Only this key's jobs may name the endpoint; empty: any key's.",
    )
    is_active = models.BooleanField(default=True)
    encrypted_secret = models.TextField(editable=False)
    secret_prefix = models.CharField(max_length=16, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "webhook endpoint"

    def __str__(self) -> str:
        return self.name

    def set_secret(self, secret: str) -> None:
        self.encrypted_secret = crypto.encrypt(secret)
        self.secret_prefix = secret[:12]

    def get_secret(self) -> str | None:
        """The plaintext secret; None when the key it was sealed with is gone."""
        return crypto.decrypt(self.encrypted_secret)


class DeliveryStatus(models.TextChoices):
    WAITING = "waiting"  # the job has not ended yet
    PENDING = "pending"  # due at next_attempt_at
    SENDING = "sending"  # claimed by a worker until lease_expires_at
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookDelivery(models.Model):
    """One job's notice to one endpoint; its id is the ``webhook-id`` of every attempt.

    Written with the job (``waiting``) and made due in the transaction that writes the job's
    terminal state, so no ended job's notice can be lost. ``job`` has no database constraint:
    jobs are purged by their result TTL, and a notice may outlive its job's row.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    job = models.ForeignKey(
        AsyncJob, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.WAITING
    )
    event_type = models.CharField(max_length=40, blank=True, default="")
    payload = models.JSONField(null=True, blank=True, help_text="The body, built at first send.")
    attempts = models.PositiveIntegerField(default=0)
    due_since = models.DateTimeField(null=True, blank=True, help_text="When the job ended.")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhook_due_idx"),
            models.Index(fields=["status", "lease_expires_at"], name="webhook_lease_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.endpoint_id} <- job {self.job_id} ({self.status})"
