"""The engines' claim shares the workers between keys: one key's backlog never holds back
another key's jobs (jobs/sql.py: claim_pending, through services.claim_pending_jobs)."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction

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


def processing_per_key() -> Counter[int | None]:
    jobs = AsyncJob.objects.filter(status=JobStatus.PROCESSING)
    return Counter(jobs.values_list("virtual_key", flat=True))


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


# --- weighted shares (VirtualKey.share) -----------------------------------------------------------


def test_backlogged_keys_take_turns_in_proportion_to_their_shares():
    light, heavy = VirtualKeyFactory(share=1), VirtualKeyFactory(share=3)
    queue(light, 50)  # the older backlog: light wins each tie
    queue(heavy, 50)

    taken = [claim_keys(1)[0] for _ in range(8)]

    assert taken == [light.pk, heavy.pk, heavy.pk, heavy.pk] * 2


@pytest.mark.parametrize(
    ("shares", "claims", "split"), [((3, 1), 40, (30, 10)), ((5, 2), 70, (50, 20))]
)
def test_one_claim_splits_its_slots_by_the_shares(shares, claims, split):
    first, second = (VirtualKeyFactory(share=share) for share in shares)
    queue(first, 200)
    queue(second, 200)

    taken = Counter(claim_keys(claims))

    assert (taken[first.pk], taken[second.pk]) == split


def test_a_heavy_key_with_its_share_processing_waits_for_a_light_key_to_catch_up():
    heavy, light = VirtualKeyFactory(share=3), VirtualKeyFactory(share=1)
    queue(heavy, 9, JobStatus.PROCESSING)  # 3 per share
    queue(light, 1, JobStatus.PROCESSING)  # 1 per share
    queue(heavy, 100)
    queue(light, 100)

    taken = [claim_keys(1)[0] for _ in range(6)]

    # light runs 2 to reach 3 per share, then they share the other 4 as 3 to 1 (heavy's
    # backlog is the older: it wins the tie).
    assert taken == [light.pk, light.pk, heavy.pk, light.pk, heavy.pk, heavy.pk]
    assert processing_per_key() == {heavy.pk: 12, light.pk: 4}


def test_a_key_with_nothing_processing_takes_the_next_slot_whatever_the_others_shares():
    crowd, other = VirtualKeyFactory(share=1000), VirtualKeyFactory(share=1)
    queue(crowd, 5, JobStatus.PROCESSING)
    queue(crowd, 500)
    [newcomer] = queue(other, 1)

    [claimed] = services.claim_pending_jobs(1, "w")

    assert claimed.pk == newcomer


def test_jobs_without_a_key_have_a_share_of_1():
    weighted = VirtualKeyFactory(share=2)
    queue(None, 50)  # older: the admins' group wins each tie
    queue(weighted, 50)

    assert [claim_keys(1)[0] for _ in range(6)] == [None, weighted.pk, weighted.pk] * 2


def test_a_change_of_share_counts_from_the_next_claim():
    first, second = VirtualKeyFactory(), VirtualKeyFactory()
    queue(first, 50)
    queue(second, 50)
    assert Counter(claim_keys(4)) == {first.pk: 2, second.pk: 2}

    VirtualKey.objects.filter(pk=second.pk).update(share=3)

    # second catches up to three times first's jobs processing, then keeps to it.
    assert Counter(claim_keys(8)) == {first.pk: 1, second.pk: 7}
    assert processing_per_key() == {first.pk: 3, second.pk: 9}


@pytest.mark.parametrize("share", [0, -1, 1001])
def test_the_key_table_refuses_a_share_the_claim_cannot_divide_by(share):
    key = VirtualKeyFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        VirtualKey.objects.filter(pk=key.pk).update(share=share)


@pytest.mark.django_db(transaction=True)
def test_engines_claiming_backlogged_keys_at_once_take_every_job_exactly_once():
    keys = [VirtualKeyFactory(share=3), VirtualKeyFactory()]
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


def test_the_claim_reads_the_queue_through_the_key_group_indexes_and_shares_by_primary_key():
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
    # Each key's share is one probe of the key table's primary key.
    reads_of_keys = [line for line in plan if VirtualKey._meta.db_table in line]
    assert reads_of_keys
    assert all("pkey" in line or "PRIMARY KEY" in line for line in reads_of_keys), reads_of_keys
