"""What the admin's dashboard shows: the jobs submitted in a recent window, counted in the database.

Counts are grouped in the database through the list index on ``created_at``. Percentiles of run
time and queue wait are computed here over the newest finished jobs of the window (at most
``sample_size``), the same way on Postgres and SQLite.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, F, Q
from django.utils import timezone

from jobs.models import AsyncJob, JobStatus

WINDOW = timedelta(hours=1)
SAMPLE_SIZE = 10_000
TOP_KEYS = 10
FINISHED = (JobStatus.COMPLETED, JobStatus.FAILED)


@dataclass(frozen=True)
class Percentiles:
    p50: float | None  # seconds
    p95: float | None


@dataclass(frozen=True)
class ProviderActivity:
    provider: str
    by_status: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


@dataclass(frozen=True)
class KeyActivity:
    key_id: int | None  # None: jobs submitted with an admin JWT
    name: str
    prefix: str
    jobs: int
    failed: int


@dataclass(frozen=True)
class Activity:
    since: datetime
    by_status: dict[str, int]
    providers: list[ProviderActivity]
    run_time: Percentiles
    queue_wait: Percentiles
    sampled: int  # finished jobs behind the percentiles
    top_keys: list[KeyActivity] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def error_rate(self) -> float | None:
        """Failed among finished (completed or failed) jobs, from 0 to 1; None when none ended."""
        failed = self.by_status.get(JobStatus.FAILED, 0)
        finished = failed + self.by_status.get(JobStatus.COMPLETED, 0)
        return failed / finished if finished else None


def percentiles(values: list[float]) -> Percentiles:
    """p50 and p95 with linear interpolation between the closest ranks (percentile_cont's way)."""
    if not values:
        return Percentiles(None, None)
    if len(values) == 1:
        return Percentiles(values[0], values[0])
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return Percentiles(cuts[49], cuts[94])


def job_activity(
    *, now: datetime | None = None, window: timedelta = WINDOW, sample_size: int = SAMPLE_SIZE
) -> Activity:
    since = (now or timezone.now()) - window
    recent = AsyncJob.objects.filter(created_at__gte=since).order_by()

    by_status: dict[str, int] = {status: 0 for status in JobStatus.values}
    per_provider: dict[str, dict[str, int]] = defaultdict(dict)
    for row in recent.values("provider", "status").annotate(jobs=Count("pk")):
        by_status[row["status"]] += row["jobs"]
        per_provider[row["provider"]][row["status"]] = row["jobs"]
    providers = sorted(
        (ProviderActivity(name, counts) for name, counts in per_provider.items()),
        key=lambda activity: (-activity.total, activity.provider),
    )

    times = (
        recent.filter(status__in=FINISHED, started_at__isnull=False, completed_at__isnull=False)
        .order_by("-created_at")
        .values_list("created_at", "started_at", "completed_at")[:sample_size]
    )
    waits, runs = [], []
    for created, started, completed in times:
        if started is None or completed is None:  # excluded by the filter; typed as nullable
            continue
        waits.append((started - created).total_seconds())
        runs.append((completed - started).total_seconds())

    keys = (
        recent.values("virtual_key_id", "virtual_key__name", "virtual_key__prefix")
        .annotate(jobs=Count("pk"), failed=Count("pk", filter=Q(status=JobStatus.FAILED)))
        .order_by("-jobs", F("virtual_key__name").asc(nulls_last=True))[:TOP_KEYS]
    )
    top_keys = [
        KeyActivity(
            key_id=row["virtual_key_id"],
            name=row["virtual_key__name"] or "(admin JWT or deleted key)",
            prefix=row["virtual_key__prefix"] or "",
            jobs=row["jobs"],
            failed=row["failed"],
        )
        for row in keys
    ]
    return Activity(
        since=since,
        by_status=by_status,
        providers=providers,
        run_time=percentiles(runs),
        queue_wait=percentiles(waits),
        sampled=len(runs),
        top_keys=top_keys,
    )
