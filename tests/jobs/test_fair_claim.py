"""The engines' claim shares the workers between keys: one key's backlog never holds back
another key's jobs (jobs/sql.py: claim_pending, through services.claim_pending_jobs)."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection

from gateway.access.models import VirtualKey
from jobs import services, sql
from jobs.models import AsyncJob, JobStatus
from tests.factories import AsyncJobFactory, VirtualKeyFactory

pytestmark = pytest.mark.django_db


def queue(key: VirtualKey | None, count: int, status: str = JobStatus.PENDING) -> list[Any]:
    """``count`` jobs of ``key`` in ``status``, oldest first; their ids."""
    jobs = [
        AsyncJobFactory.build(virtual_key=key, status=status, claimed_by="elsewhere")
        for _ in range(count)
    ]
    return [job.pk for job in AsyncJob.objects.bulk_create(jobs)]


def claim_keys(limit: int) -> list[int | None]:
    """The keys of the jobs one claim of ``limit`` takes."""
    return [job.virtual_key_id for job in services.claim_pending_jobs(limit, "w")]


def test_another_keys_new_job_is_claimed_before_a_backlog_that_fills_the_workers():
    crowd, other = VirtualKeyFactory(), VirtualKeyFactory()
    queue(crowd, 3, JobStatus.PROCESSING)
    queue(crowd, 500)
    [newcomer] = queue(other, 1)

    [claimed] = services.claim_pending_jobs(1, "w")

    assert claimed.pk == newcomer
    assert AsyncJob.objects.filter(virtual_key=crowd, status=JobStatus.PENDING).count() == 500


def test_two_backlogged_keys_take_turns():
    first, second = VirtualKeyFactory(), VirtualKeyFactory()
    queue(first, 50)
    queue(second, 50)

    taken = [claim_keys(1)[0] for _ in range(6)]

    assert taken == [first.pk, second.pk] * 3


def test_one_claim_fills_the_least_busy_key_first_then_shares_the_rest():
    busy, idle = VirtualKeyFactory(), VirtualKeyFactory()
    queue(busy, 4, JobStatus.PROCESSING)
    queue(busy, 500)
    queue(idle, 500)

    taken = Counter(claim_keys(10))

    # idle runs 4 to catch up with busy's 4, then they share the other 6 alternately.
    assert taken == {idle.pk: 7, busy.pk: 3}


def test_jobs_without_a_key_are_a_group_of_their_own():
    crowd = VirtualKeyFactory()
    queue(crowd, 2, JobStatus.PROCESSING)
    queue(crowd, 20)
    admins = queue(None, 2)

    assert sorted(job.pk for job in services.claim_pending_jobs(2, "w")) == sorted(admins)
    assert claim_keys(3) == [crowd.pk] * 3


def test_a_single_key_is_served_oldest_first():
    key = VirtualKeyFactory()
    jobs = queue(key, 5)

    assert [job.pk for job in services.claim_pending_jobs(3, "w")] == jobs[:3]
    assert [job.pk for job in services.claim_pending_jobs(3, "w")] == jobs[3:]


@pytest.mark.django_db(transaction=True)
def test_engines_claiming_backlogged_keys_at_once_take_every_job_exactly_once():
    keys = [VirtualKeyFactory() for _ in range(2)]
    jobs = set(queue(keys[0], 60) + queue(keys[1], 30) + queue(None, 10))
    start = threading.Barrier(6)

    def claim_until_empty(worker_id: str) -> list:
        start.wait(timeout=10)
        claimed: list = []
        try:
            while batch := services.claim_pending_jobs(7, worker_id):
                claimed += [job.pk for job in batch]
            return claimed
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        claims = list(pool.map(claim_until_empty, [f"engine-{n}" for n in range(6)]))

    claimed = [pk for batch in claims for pk in batch]
    assert len(claimed) == len(set(claimed)) == len(jobs)
    assert set(claimed) == jobs
    assert set(AsyncJob.objects.values_list("attempts", flat=True)) == {1}


def test_the_claim_reads_the_queue_through_the_key_group_indexes():
    """The statement's groups are the indexes' expression; a change to either fails here."""
    crowd = VirtualKeyFactory()
    queue(crowd, 200, JobStatus.COMPLETED)
    queue(crowd, 20, JobStatus.PROCESSING)
    queue(crowd, 200)
    queue(None, 2)
    explain = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
    plan: list[str] = []

    def explained(execute: Any, statement: str, params: Any, many: bool, context: Any) -> Any:
        if statement == sql._claim_sql(connection):
            execute(explain + statement, params, many, context)
            plan.extend(str(row) for row in context["cursor"].fetchall())
        return execute(statement, params, many, context)

    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {AsyncJob._meta.db_table}")  # as autovacuum keeps it
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")  # a table this small is read whole
    with connection.execute_wrapper(explained):
        assert len(claim_keys(3)) == 3

    assert "job_pending_group_idx" in "\n".join(plan)
    assert "job_processing_group_idx" in "\n".join(plan)
