"""Job state changes: claimed once, finished once, recovered when a worker dies."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from gateway.principals import Principal
from jobs import services
from jobs.models import AsyncJob, JobStatus
from tests.factories import AsyncJobFactory, VirtualKeyFactory

pytestmark = pytest.mark.django_db


def _submit(**overrides):
    fields = {
        "principal": Principal(virtual_key=VirtualKeyFactory()),
        "request_type": "text_completion",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "fallbacks": ["groq/llama"],
        "request": {"prompt": ["a", "é\u2028"], "max_tokens": 5, "logit_bias": {"50256": -100}},
        "result_ttl": 600,
    }
    return services.submit_job(**{**fields, **overrides})


def test_submit_stores_the_row_the_returned_job_describes():
    job = _submit()
    stored = AsyncJob.objects.get(pk=job.pk)
    for field in AsyncJob._meta.concrete_fields:
        assert getattr(stored, field.attname) == getattr(job, field.attname), field.name
    assert stored.status == JobStatus.PENDING
    assert stored.attempts == 0
    assert stored.claimed_by == ""
    # Rung at once: created and dispatched in the same moment, give or take the INSERT's own.
    assert timedelta(0) <= stored.created_at - stored.dispatched_at < timedelta(seconds=1)
    assert not job._state.adding


def test_submit_by_an_admin_stores_no_key():
    job = _submit(principal=Principal(virtual_key=None, is_admin=True))
    assert AsyncJob.objects.get(pk=job.pk).virtual_key_id is None


def test_submit_inside_a_transaction_that_rolls_back_stores_nothing():
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        _submit()
        raise RuntimeError("caller fails after submitting")
    assert not AsyncJob.objects.exists()


def test_claim_moves_pending_to_processing_under_a_lease():
    job = AsyncJobFactory()
    claimed = services.claim_job(job.pk, "worker-a")
    assert claimed is not None
    assert claimed.status == JobStatus.PROCESSING
    assert claimed.claimed_by == "worker-a"
    assert claimed.attempts == 1
    assert claimed.lease_expires_at > timezone.now()


def test_a_duplicate_delivery_does_not_claim_twice():
    job = AsyncJobFactory()
    assert services.claim_job(job.pk, "worker-a") is not None
    assert services.claim_job(job.pk, "worker-b") is None
    assert AsyncJob.objects.get(pk=job.pk).claimed_by == "worker-a"


def test_claim_of_a_deleted_job_is_none():
    job = AsyncJobFactory()
    job.delete()
    assert services.claim_job(job.pk, "worker-a") is None


def test_finish_writes_result_and_expiry_from_completion():
    job = AsyncJobFactory(result_ttl=120)
    services.claim_job(job.pk, "w")
    assert services.finish_job(job.pk, "w", result_ttl=120, status_code=200, result={"ok": 1})
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert job.result == {"ok": 1}
    assert job.expires_at - job.completed_at == timedelta(seconds=120)


def test_terminal_state_is_written_once():
    job = AsyncJobFactory()
    services.claim_job(job.pk, "w")
    assert services.finish_job(job.pk, "w", result_ttl=60, status_code=200, result={"first": 1})
    assert not services.finish_job(job.pk, "w", result_ttl=60, status_code=500, error={"late": 1})
    job.refresh_from_db()
    assert (job.status, job.result, job.error) == (JobStatus.COMPLETED, {"first": 1}, None)


def test_a_worker_that_lost_its_lease_cannot_finish_the_job():
    job = AsyncJobFactory()
    services.claim_job(job.pk, "old-worker")
    AsyncJob.objects.filter(pk=job.pk).update(claimed_by="new-worker")
    assert not services.finish_job(job.pk, "old-worker", result_ttl=60, status_code=200, result={})
    assert AsyncJob.objects.get(pk=job.pk).status == JobStatus.PROCESSING


def test_renew_leases_extends_only_this_workers_jobs():
    mine, theirs = AsyncJobFactory(), AsyncJobFactory()
    services.claim_job(mine.pk, "me")
    services.claim_job(theirs.pk, "them")
    soon = timezone.now() + timedelta(seconds=1)
    AsyncJob.objects.update(lease_expires_at=soon)
    assert services.renew_leases("me", [str(mine.pk), str(theirs.pk)]) == 1
    assert AsyncJob.objects.get(pk=mine.pk).lease_expires_at > soon
    assert AsyncJob.objects.get(pk=theirs.pk).lease_expires_at == soon


def test_release_gives_jobs_back_without_counting_the_try(dispatched):
    job = AsyncJobFactory()
    services.claim_job(job.pk, "w")
    assert services.release_jobs("w", [str(job.pk)]) == 1
    job.refresh_from_db()
    assert (job.status, job.attempts, job.claimed_by) == (JobStatus.PENDING, 0, "")
    assert dispatched == [str(job.pk)]


def test_job_with_expired_lease_is_requeued_and_dispatched(dispatched):
    job = AsyncJobFactory()
    services.claim_job(job.pk, "dead-worker")
    AsyncJob.objects.filter(pk=job.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    counts = services.redispatch_stale_jobs()
    assert counts["requeued"] == 1
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING and job.claimed_by == ""
    assert dispatched == [str(job.pk)]


def test_job_abandoned_too_often_fails_with_clear_error(settings, dispatched):
    settings.GATEWAY_JOB_MAX_ATTEMPTS = 2
    job = AsyncJobFactory(
        status=JobStatus.PROCESSING,
        attempts=2,
        claimed_by="dead",
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    counts = services.redispatch_stale_jobs()
    assert counts["failed"] == 1
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.status_code == 500
    assert job.error["error"]["code"] == "job_abandoned"
    assert job.expires_at is not None
    assert dispatched == []


def test_pending_job_nobody_picked_up_is_dispatched_again(settings, dispatched):
    settings.GATEWAY_REDISPATCH_AFTER = 30
    old = AsyncJobFactory(dispatched_at=timezone.now() - timedelta(seconds=31))
    AsyncJobFactory(dispatched_at=timezone.now())
    counts = services.redispatch_stale_jobs()
    assert counts["redispatched"] == 1
    assert dispatched == [str(old.pk)]
    old.refresh_from_db()
    assert old.dispatched_at > timezone.now() - timedelta(seconds=5)


def test_processing_job_with_live_lease_is_left_alone(dispatched):
    job = AsyncJobFactory()
    services.claim_job(job.pk, "alive")
    assert services.redispatch_stale_jobs() == {"failed": 0, "requeued": 0, "redispatched": 0}
    assert dispatched == []


def test_retry_resets_a_failed_job(django_capture_on_commit_callbacks, dispatched):
    job = AsyncJobFactory(
        status=JobStatus.FAILED,
        attempts=1,
        status_code=400,
        error={"x": 1},
        completed_at=timezone.now(),
        expires_at=timezone.now(),
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert services.retry_job(job)
    job.refresh_from_db()
    assert (job.status, job.error, job.expires_at, job.attempts) == (
        JobStatus.PENDING,
        None,
        None,
        0,
    )
    assert dispatched == [str(job.pk)]


def test_retry_leaves_a_completed_job_alone(dispatched):
    job = AsyncJobFactory(status=JobStatus.COMPLETED, result={"ok": 1})
    assert not services.retry_job(job)
    assert AsyncJob.objects.get(pk=job.pk).status == JobStatus.COMPLETED
