"""Job state changes: claimed once, finished once, recovered when a worker dies."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from gateway.access.principals import Principal
from jobs import services
from jobs.models import AsyncJob, JobStatus
from jobs.services import Finish
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


def claim(job: AsyncJob, worker_id: str) -> AsyncJob:
    """Claim ``job`` as the engine does (the oldest pending jobs, here this one)."""
    [claimed] = services.claim_pending_jobs(10, worker_id)
    assert claimed.pk == job.pk
    return claimed


def finish(job: AsyncJob, worker_id: str, **fields) -> bool:
    """Write one terminal state as the engine's finish batches do."""
    [written] = services.finish_jobs(worker_id, [Finish(job.pk, **fields)])
    return written


def test_claim_moves_pending_to_processing_under_a_lease():
    job = AsyncJobFactory()
    claimed = claim(job, "worker-a")
    assert claimed.status == JobStatus.PROCESSING
    assert claimed.claimed_by == "worker-a"
    assert claimed.attempts == 1
    assert claimed.lease_expires_at > timezone.now()
    assert claimed.started_at is not None


def test_claim_takes_the_oldest_pending_jobs_up_to_the_limit_and_nothing_else():
    now = timezone.now()
    newest, oldest, middle = AsyncJobFactory(), AsyncJobFactory(), AsyncJobFactory()
    for job, age in ((newest, 1), (oldest, 30), (middle, 20)):
        AsyncJob.objects.filter(pk=job.pk).update(created_at=now - timedelta(seconds=age))
    AsyncJobFactory(status=JobStatus.PROCESSING, claimed_by="another-worker")
    AsyncJobFactory(status=JobStatus.COMPLETED, status_code=200, result={"kept": True})

    assert [job.pk for job in services.claim_pending_jobs(2, "w")] == [oldest.pk, middle.pk]
    assert [job.pk for job in services.claim_pending_jobs(10, "w")] == [newest.pk]
    assert services.claim_pending_jobs(10, "w") == []


def test_a_claimed_job_is_not_claimed_again():
    job = AsyncJobFactory()
    claim(job, "worker-a")
    assert services.claim_pending_jobs(10, "worker-b") == []
    assert AsyncJob.objects.get(pk=job.pk).claimed_by == "worker-a"


@pytest.mark.django_db(transaction=True)
def test_engines_claiming_at_the_same_time_never_claim_the_same_job():
    jobs = {AsyncJobFactory().pk for _ in range(60)}
    start = threading.Barrier(6)

    def claim_all(worker_id: str) -> list:
        start.wait(timeout=10)
        try:
            return [job.pk for job in services.claim_pending_jobs(15, worker_id)]
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        claims = list(pool.map(claim_all, [f"engine-{n}" for n in range(6)]))

    claimed = [pk for batch in claims for pk in batch]
    assert len(claimed) == len(set(claimed)) == len(jobs)
    assert set(claimed) == jobs
    assert set(AsyncJob.objects.values_list("attempts", flat=True)) == {1}


def test_finish_writes_result_and_expiry_from_completion():
    job = AsyncJobFactory(result_ttl=120)
    claim(job, "w")
    assert finish(job, "w", result_ttl=120, status_code=200, result={"ok": 1})
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert job.result == {"ok": 1}
    assert job.lease_expires_at is None
    assert job.expires_at - job.completed_at == timedelta(seconds=120)


def test_finish_with_an_error_fails_the_job():
    job = AsyncJobFactory()
    claim(job, "w")
    error = {"error": {"code": "upstream_error"}}
    assert finish(job, "w", result_ttl=60, status_code=502, error=error)
    job.refresh_from_db()
    assert (job.status, job.status_code, job.result, job.error) == (
        JobStatus.FAILED,
        502,
        None,
        error,
    )


def test_terminal_state_is_written_once():
    job = AsyncJobFactory()
    claim(job, "w")
    assert finish(job, "w", result_ttl=60, status_code=200, result={"first": 1})
    assert not finish(job, "w", result_ttl=60, status_code=500, error={"late": 1})
    job.refresh_from_db()
    assert (job.status, job.result, job.error) == (JobStatus.COMPLETED, {"first": 1}, None)


def test_a_worker_that_lost_its_lease_cannot_finish_the_job():
    job = AsyncJobFactory()
    claim(job, "old-worker")
    AsyncJob.objects.filter(pk=job.pk).update(claimed_by="new-worker")
    assert not finish(job, "old-worker", result_ttl=60, status_code=200, result={})
    assert AsyncJob.objects.get(pk=job.pk).status == JobStatus.PROCESSING


def test_a_finish_batch_answers_for_each_job_whether_it_was_written():
    mine, lost = AsyncJobFactory(), AsyncJobFactory()
    services.claim_pending_jobs(10, "w")
    AsyncJob.objects.filter(pk=lost.pk).update(claimed_by="new-worker")

    written = services.finish_jobs(
        "w", [Finish(mine.pk, 60, 200, result={"ok": 1}), Finish(lost.pk, 60, 200, result={})]
    )

    assert written == [True, False]
    assert AsyncJob.objects.get(pk=mine.pk).status == JobStatus.COMPLETED
    assert AsyncJob.objects.get(pk=lost.pk).status == JobStatus.PROCESSING


def test_renew_leases_extends_only_this_workers_jobs():
    mine = AsyncJobFactory()
    claim(mine, "me")
    theirs = AsyncJobFactory()
    claim(theirs, "them")
    soon = timezone.now() + timedelta(seconds=1)
    AsyncJob.objects.update(lease_expires_at=soon)
    assert services.renew_leases("me", [str(mine.pk), str(theirs.pk)]) == 1
    assert AsyncJob.objects.get(pk=mine.pk).lease_expires_at > soon
    assert AsyncJob.objects.get(pk=theirs.pk).lease_expires_at == soon


def test_release_gives_jobs_back_without_counting_the_try(dispatched):
    job = AsyncJobFactory()
    claim(job, "w")
    assert services.release_jobs("w", [str(job.pk)]) == 1
    job.refresh_from_db()
    assert (job.status, job.attempts, job.claimed_by) == (JobStatus.PENDING, 0, "")
    assert dispatched.rung == 1


def test_job_with_expired_lease_is_requeued_and_dispatched(dispatched):
    job = AsyncJobFactory()
    claim(job, "dead-worker")
    AsyncJob.objects.filter(pk=job.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    counts = services.redispatch_stale_jobs()
    assert counts["requeued"] == 1
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING and job.claimed_by == ""
    assert dispatched.rung == 1


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
    assert dispatched.rung == 0


def test_pending_job_nobody_picked_up_is_dispatched_again(settings, dispatched):
    settings.GATEWAY_REDISPATCH_AFTER = 30
    old = AsyncJobFactory(dispatched_at=timezone.now() - timedelta(seconds=31))
    AsyncJobFactory(dispatched_at=timezone.now())
    counts = services.redispatch_stale_jobs()
    assert counts["redispatched"] == 1
    assert dispatched.rung == 1
    old.refresh_from_db()
    assert old.dispatched_at > timezone.now() - timedelta(seconds=5)


def test_processing_job_with_live_lease_is_left_alone(dispatched):
    job = AsyncJobFactory()
    claim(job, "alive")
    assert services.redispatch_stale_jobs() == {"failed": 0, "requeued": 0, "redispatched": 0}
    assert dispatched.rung == 0


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
    assert dispatched.rung == 1


def test_retry_keeps_the_failed_trys_outcome(django_capture_on_commit_callbacks, dispatched):
    started, ended = timezone.now() - timedelta(seconds=5), timezone.now()
    error = {"status_code": 502, "error": {"code": "bad_gateway", "message": "upstream down"}}
    earlier = {"status": "failed", "status_code": 429, "error": {"x": 0}, "attempts": 1}
    job = AsyncJobFactory(
        status=JobStatus.FAILED,
        attempts=2,
        status_code=502,
        error=error,
        started_at=started,
        completed_at=ended,
        tries=[earlier],
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert services.retry_job(job)
    job.refresh_from_db()
    assert job.tries[0] == earlier
    kept = job.tries[1]
    assert kept == {
        "status": "failed",
        "status_code": 502,
        "error": error,
        "attempts": 2,
        "started_at": started.isoformat(),
        "completed_at": ended.isoformat(),
        "retried_at": kept["retried_at"],
    }
    assert job.dispatched_at.isoformat() == kept["retried_at"]


def test_retry_leaves_a_completed_job_alone(dispatched):
    job = AsyncJobFactory(status=JobStatus.COMPLETED, result={"ok": 1})
    assert not services.retry_job(job)
    assert AsyncJob.objects.get(pk=job.pk).status == JobStatus.COMPLETED
