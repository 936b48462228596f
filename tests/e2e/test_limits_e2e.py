"""A key's limits over real HTTP, with a real worker and the fake upstream: 429s with
Retry-After for the request rate, the token rate and the pending cap, and the cap held exactly
by concurrent submits."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.helpers import ERROR_KEYS

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.e2e.conftest import Database, GatewayClient

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("gateway")]


def body(model: str = "openai/ok") -> dict[str, Any]:
    return {"model": model, "prompt": f"Say hi {uuid.uuid4().hex}", "max_tokens": 5}


def assert_429(response: httpx.Response, code: str) -> int:
    """A 429 in the error shape with ``code``; its Retry-After, whole seconds."""
    assert response.status_code == 429, response.text
    answer = response.json()
    assert set(answer) == ERROR_KEYS
    assert (answer["type"], answer["error"]["code"]) == ("rate_limit_error", code)
    retry_after = int(response.headers["Retry-After"])
    assert retry_after >= 1
    return retry_after


def clear_of_the_minutes_end(seconds: float = 15.0) -> None:
    """Wait, if need be, until the clock minute has more than ``seconds`` left, so that a test's
    few requests fall in one minute."""
    left = 60 - time.time() % 60
    if left <= seconds:
        time.sleep(left + 0.5)


def count_jobs(e2e_db: Database, raw_key: str) -> int:
    from gateway.access.keys import hash_key
    from jobs.models import AsyncJob

    with e2e_db.access():
        return AsyncJob.objects.filter(virtual_key__key_hash=hash_key(raw_key)).count()


def test_over_the_request_rate_submits_are_429_until_the_next_minute(
    api: GatewayClient, make_key: Callable[..., str], e2e_db: Database
) -> None:
    key = make_key(requests_per_minute=3)
    clear_of_the_minutes_end()
    for _ in range(3):
        api.submit_ok(key, body())
    refused = api.submit(key, body())
    retry_after = assert_429(refused, "rate_limit_exceeded")
    assert abs(retry_after - (60 - time.time() % 60)) <= 2
    assert count_jobs(e2e_db, key) == 3


def test_at_max_pending_submits_are_429_until_a_job_ends(
    api: GatewayClient, make_key: Callable[..., str], e2e_db: Database
) -> None:
    key = make_key(max_pending=2)
    slow = [api.submit_ok(key, body("openai/slow-1500")) for _ in range(2)]
    assert_429(api.submit(key, body()), "too_many_pending_jobs")
    assert count_jobs(e2e_db, key) == 2

    for job_id in slow:
        assert api.poll_until_done(key, job_id).json()["status"] == "completed"
    api.submit_ok(key, body())


def test_concurrent_submits_at_the_pending_cap_accept_exactly_the_cap(
    api: GatewayClient, make_key: Callable[..., str], e2e_db: Database
) -> None:
    key = make_key(max_pending=3)
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda _: api.submit(key, body("openai/slow-3000")), range(12)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [202] * 3 + [429] * 9, [answer.text for answer in answers]
    for answer in answers:
        if answer.status_code == 429:
            assert_429(answer, "too_many_pending_jobs")
    assert count_jobs(e2e_db, key) == 3


def test_once_finished_jobs_used_the_token_rate_submits_are_429(
    api: GatewayClient, make_key: Callable[..., str]
) -> None:
    key = make_key(tokens_per_minute=5)
    clear_of_the_minutes_end(20)
    job_id = api.submit_ok(key, body())
    done = api.poll_until_done(key, job_id).json()
    usage = done["result"]["usage"]
    assert usage["prompt_tokens"] + usage["completion_tokens"] >= 5
    retry_after = assert_429(api.submit(key, body()), "token_rate_limit_exceeded")
    assert abs(retry_after - (60 - time.time() % 60)) <= 2
