"""The dashboard's numbers, from jobs whose times are known."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from jobs.dashboard import Percentiles, job_activity, percentiles
from jobs.models import AsyncJob, JobStatus
from tests.factories import AsyncJobFactory, VirtualKeyFactory

pytestmark = pytest.mark.django_db


def job(age_minutes: float, wait: float | None = None, run: float | None = None, **fields: Any):
    created = timezone.now() - timedelta(minutes=age_minutes)
    started = created + timedelta(seconds=wait) if wait is not None else None
    completed = started + timedelta(seconds=run) if started and run is not None else None
    made = AsyncJobFactory(started_at=started, completed_at=completed, **fields)
    AsyncJob.objects.filter(pk=made.pk).update(created_at=created)
    return made


@pytest.fixture
def jobs() -> dict[str, Any]:
    busy, quiet = VirtualKeyFactory(name="busy"), VirtualKeyFactory(name="quiet")
    for wait, run in ((1, 1), (2, 2), (3, 3), (4, 4), (5, 5)):
        job(10, wait, run, status=JobStatus.COMPLETED, provider="openai", virtual_key=busy)
    job(20, 6, 10, status=JobStatus.FAILED, provider="anthropic", virtual_key=quiet)
    job(5, status=JobStatus.PENDING, provider="anthropic", virtual_key=busy)
    job(5, 1, status=JobStatus.PROCESSING, provider="openai", virtual_key=None)
    # Older than the window: counted nowhere.
    job(90, 100, 100, status=JobStatus.FAILED, provider="groq", virtual_key=quiet)
    return {"busy": busy, "quiet": quiet}


def test_counts_jobs_per_status_within_the_last_hour(jobs):
    activity = job_activity()
    assert activity.by_status == {
        "pending": 1,
        "processing": 1,
        "completed": 5,
        "failed": 1,
        "cancelled": 0,
    }
    assert activity.total == 8


def test_counts_jobs_per_provider_and_status(jobs):
    providers = {row.provider: (row.by_status, row.total) for row in job_activity().providers}
    assert providers == {
        "openai": ({"completed": 5, "processing": 1}, 6),
        "anthropic": ({"failed": 1, "pending": 1}, 2),
    }
    assert [row.provider for row in job_activity().providers] == ["openai", "anthropic"]


def test_run_time_and_queue_wait_percentiles_of_finished_jobs(jobs):
    activity = job_activity()
    # Runs 1, 2, 3, 4, 5, 10 s: p50 between 3 and 4, p95 three quarters from 5 to 10.
    assert activity.run_time.p50 == pytest.approx(3.5)
    assert activity.run_time.p95 == pytest.approx(8.75)
    # Waits 1, 2, 3, 4, 5, 6 s.
    assert activity.queue_wait.p50 == pytest.approx(3.5)
    assert activity.queue_wait.p95 == pytest.approx(5.75)
    assert activity.sampled == 6


def test_percentiles_use_the_newest_jobs_when_the_sample_is_bounded(jobs):
    activity = job_activity(sample_size=5)  # the 20-minute-old failure falls out
    assert activity.sampled == 5
    assert activity.run_time.p50 == pytest.approx(3)


def test_error_rate_is_failed_among_finished_jobs(jobs):
    assert job_activity().error_rate == pytest.approx(1 / 6)


def test_top_keys_by_volume_with_their_failures(jobs):
    keys = [(k.name, k.prefix, k.jobs, k.failed) for k in job_activity().top_keys]
    assert keys == [
        ("busy", jobs["busy"].prefix, 6, 0),
        ("quiet", jobs["quiet"].prefix, 1, 1),
        ("(admin JWT or deleted key)", "", 1, 0),
    ]


def test_a_wider_window_takes_older_jobs_in(jobs):
    activity = job_activity(window=timedelta(hours=2))
    assert activity.total == 9
    assert activity.by_status["failed"] == 2


def test_no_jobs_no_numbers():
    activity = job_activity()
    assert activity.total == 0
    assert activity.error_rate is None
    assert (activity.run_time.p50, activity.run_time.p95) == (None, None)
    assert activity.providers == [] and activity.top_keys == []


def test_percentiles_of_nothing_are_none():
    assert percentiles([]) == Percentiles(None, None)


@pytest.mark.parametrize(
    ("values", "p50", "p95"),
    [([4.0], 4.0, 4.0), ([1.0, 3.0], 2.0, 2.9), ([float(v) for v in range(1, 101)], 50.5, 95.05)],
)
def test_percentiles_interpolate_between_ranks(values, p50, p95):
    result = percentiles(values)
    assert (result.p50, result.p95) == (pytest.approx(p50), pytest.approx(p95))
