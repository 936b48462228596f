"""A fair share of the workers over real HTTP, with a real worker and the fake upstream: one
key's backlog of slow jobs fills the worker, and another key's job still runs before it."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

import pytest

from tests.e2e.conftest import JOB_TIMEOUT

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.e2e.conftest import Database, GatewayClient

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("gateway")]

IN_FLIGHT = 400  # the worker's GATEWAY_WORKER_MAX_IN_FLIGHT
BACKLOG = 3 * IN_FLIGHT  # three waves of slow calls


def _queue_backlog(e2e_db: Database, key_id: int) -> None:
    """Slow jobs of one key, pending, written as a submit writes them and older than any other."""
    from django.utils import timezone

    from jobs.models import AsyncJob

    jobs = [
        AsyncJob(
            request_type="text_completion",
            virtual_key_id=key_id,
            provider="openai",
            model="slow-3000",
            request={"prompt": f"backlog {n}", "max_tokens": 5},
            result_ttl=600,
            dispatched_at=timezone.now(),
        )
        for n in range(BACKLOG)
    ]
    with e2e_db.access():
        AsyncJob.objects.bulk_create(jobs)


def _count(e2e_db: Database, key_id: int, status: str) -> int:
    from jobs.models import AsyncJob

    with e2e_db.access():
        return AsyncJob.objects.filter(virtual_key_id=key_id, status=status).count()


def test_another_keys_job_runs_before_a_backlog_that_fills_the_worker(
    api: GatewayClient, make_key: Callable[..., str], e2e_db: Database
) -> None:
    make_key()
    crowd = e2e_db.key_ids[-1]
    _queue_backlog(e2e_db, crowd)
    _wait_until_the_worker_is_full(api, e2e_db, crowd)

    other = make_key()
    job_id = api.submit_ok(other, {"model": "openai/ok", "prompt": uuid.uuid4().hex})
    done = api.poll_until_done(other, job_id)

    assert done.json()["status"] == "completed"
    # Oldest first, it would have waited for every backlog job to be claimed.
    assert _count(e2e_db, crowd, "pending") > 0
    _cancel_backlog(e2e_db, crowd)


def _wait_until_the_worker_is_full(api: GatewayClient, e2e_db: Database, key_id: int) -> None:
    """Until the worker's next look has taken all the backlog it has room for (what another
    test left running may hold a few slots): the number processing steady for a while."""
    deadline = time.monotonic() + JOB_TIMEOUT
    last, steady_since = -1, time.monotonic()
    while True:
        processing = _count(e2e_db, key_id, "processing")
        if processing == IN_FLIGHT:
            return
        if processing != last:
            last, steady_since = processing, time.monotonic()
        elif processing and time.monotonic() - steady_since > 1.5:
            return
        api.check_alive()
        assert time.monotonic() < deadline, "the worker did not fill up with the backlog"
        time.sleep(0.1)


def _cancel_backlog(e2e_db: Database, key_id: int) -> None:
    """The later tests need the worker: the backlog is cancelled, which stops its calls."""
    from django.db import OperationalError
    from django.utils import timezone

    from jobs.models import ACTIVE_STATUSES, AsyncJob

    now = timezone.now()
    # The worker is finishing some of these jobs meanwhile, a few rows per transaction in its
    # own order: Postgres may end this one UPDATE of every row as a deadlock's victim, and it is
    # then run again.
    for attempt in range(5):
        try:
            with e2e_db.access():
                AsyncJob.objects.filter(virtual_key_id=key_id, status__in=ACTIVE_STATUSES).update(
                    status="cancelled", completed_at=now, expires_at=now
                )
            return
        except OperationalError as error:
            if "deadlock" not in str(error) or attempt == 4:
                raise
