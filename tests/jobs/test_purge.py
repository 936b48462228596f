"""The purge deletes jobs whose result TTL has passed, and nothing else."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import services
from jobs.models import AsyncJob, JobStatus
from jobs.tasks import purge_expired_jobs
from tests.factories import AsyncJobFactory

pytestmark = pytest.mark.django_db


def finished(expires_in: float) -> AsyncJob:
    now = timezone.now()
    return AsyncJobFactory(
        status=JobStatus.COMPLETED,
        result={},
        completed_at=now,
        expires_at=now + timedelta(seconds=expires_in),
    )


def test_purge_deletes_expired_jobs_and_keeps_the_rest():
    expired = [finished(-10), finished(-0.5)]
    alive = finished(60)
    pending = AsyncJobFactory()
    assert services.purge_expired_jobs() == 2
    remaining = set(AsyncJob.objects.values_list("pk", flat=True))
    assert remaining == {alive.pk, pending.pk}
    assert not remaining & {job.pk for job in expired}


def test_purge_works_through_many_batches():
    for _ in range(7):
        finished(-1)
    finished(60)
    assert services.purge_expired_jobs(batch_size=2) == 7
    assert AsyncJob.objects.count() == 1


def test_purge_task_calls_the_service():
    finished(-1)
    assert purge_expired_jobs() == 1
    assert AsyncJob.objects.count() == 0
