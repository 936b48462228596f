"""A job's notice becomes due in the transaction that writes its terminal state, and only then."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.db import DatabaseError
from django.utils import timezone

from jobs import services
from jobs.models import AsyncJob, JobStatus
from jobs.services import Finish
from jobs.webhooks.models import DeliveryStatus, WebhookDelivery
from jobs.webhooks.services import add_delivery, enqueue_deliveries
from tests.factories import AsyncJobFactory

pytestmark = pytest.mark.django_db

OK = {"result_ttl": 60, "status_code": 200, "result": {"object": "text_completion"}}


def claimed_job_with_hook(endpoint, worker_id: str = "w") -> AsyncJob:
    job = AsyncJobFactory()
    add_delivery(job, endpoint)
    [claimed] = services.claim_pending_jobs(10, worker_id)
    return claimed


def delivery() -> WebhookDelivery:
    return WebhookDelivery.objects.get()


def test_finishing_a_job_makes_its_delivery_due(endpoint):
    job = claimed_job_with_hook(endpoint)
    assert delivery().status == DeliveryStatus.WAITING

    assert services.finish_jobs("w", [Finish(job.pk, **OK)]) == [True]

    due = delivery()
    assert due.status == DeliveryStatus.PENDING
    assert due.next_attempt_at is not None and due.next_attempt_at <= timezone.now()
    assert due.due_since == due.next_attempt_at


def test_a_finish_that_lost_its_race_makes_nothing_due(endpoint):
    job = claimed_job_with_hook(endpoint)
    AsyncJob.objects.filter(pk=job.pk).update(claimed_by="another-worker")

    assert services.finish_jobs("w", [Finish(job.pk, **OK)]) == [False]

    assert delivery().status == DeliveryStatus.WAITING


def test_the_delivery_and_the_terminal_state_commit_together_or_not_at_all(endpoint):
    job = claimed_job_with_hook(endpoint)
    with (
        mock.patch(
            "jobs.services.enqueue_deliveries", side_effect=DatabaseError("connection lost")
        ),
        pytest.raises(DatabaseError),
    ):
        services.finish_jobs("w", [Finish(job.pk, **OK)])

    assert AsyncJob.objects.get(pk=job.pk).status == JobStatus.PROCESSING
    assert delivery().status == DeliveryStatus.WAITING


def test_only_the_jobs_written_in_a_batch_get_their_delivery(endpoint):
    won, lost = AsyncJobFactory(), AsyncJobFactory()
    add_delivery(won, endpoint)
    add_delivery(lost, endpoint)
    services.claim_pending_jobs(10, "w")
    AsyncJob.objects.filter(pk=lost.pk).update(claimed_by="other")

    written = services.finish_jobs("w", [Finish(won.pk, **OK), Finish(lost.pk, **OK)])

    assert written == [True, False]
    assert WebhookDelivery.objects.get(job_id=won.pk).status == DeliveryStatus.PENDING
    assert WebhookDelivery.objects.get(job_id=lost.pk).status == DeliveryStatus.WAITING


def test_a_job_failed_as_abandoned_gets_its_delivery(endpoint, settings):
    settings.GATEWAY_JOB_MAX_ATTEMPTS = 1
    job = claimed_job_with_hook(endpoint)
    AsyncJob.objects.filter(pk=job.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert services.redispatch_stale_jobs()["failed"] == 1

    assert delivery().status == DeliveryStatus.PENDING


def test_enqueue_is_once_per_delivery(endpoint):
    job = AsyncJobFactory(status=JobStatus.COMPLETED)
    add_delivery(job, endpoint)
    assert enqueue_deliveries([job.pk]) == 1
    assert enqueue_deliveries([job.pk]) == 0
    assert enqueue_deliveries([]) == 0
