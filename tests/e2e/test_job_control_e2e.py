"""Job control over real HTTP, with a real worker and the fake upstream: the job list and its
cursor, and cancels of pending, processing, finished and invisible jobs."""

from __future__ import annotations

import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.e2e.conftest import COMPLETIONS_PATH, JOB_TIMEOUT
from tests.helpers import ERROR_KEYS

if TYPE_CHECKING:
    from collections.abc import Callable

    from harness.upstream import FakeUpstream
    from tests.e2e.conftest import Database, Gateway, GatewayClient

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("gateway")]

JOBS = "/v1/async/jobs"
CHAT = "/v1/async/chat/completions"
FILLERS = 400  # the worker's GATEWAY_WORKER_MAX_IN_FLIGHT: this many slow jobs leave it no room


def body(model: str = "openai/ok", prompt: str = "Say hi") -> dict[str, Any]:
    return {"model": model, "prompt": f"{prompt} {uuid.uuid4().hex}", "max_tokens": 5}


def cancel(
    api: GatewayClient, key: str, job_id: str, path: str = COMPLETIONS_PATH
) -> httpx.Response:
    response = api.http.post(f"{path}/{job_id}/cancel", headers={"Authorization": f"Bearer {key}"})
    api.bodies.append(response.text)  # the secrets scan reads every body
    return response


def list_jobs(api: GatewayClient, key: str, **params: Any) -> httpx.Response:
    response = api.http.get(JOBS, params=params, headers={"Authorization": f"Bearer {key}"})
    api.bodies.append(response.text)
    return response


def wait_for_status(api: GatewayClient, key: str, job_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        job: dict[str, Any] = api.poll(key, job_id).json()
        if job["status"] == status:
            return job
        api.check_alive()
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        time.sleep(0.05)


def statuses(e2e_db: Database, job_ids: list[str]) -> dict[str, int]:
    from django.db.models import Count

    from jobs.models import AsyncJob

    with e2e_db.access():
        rows = AsyncJob.objects.filter(pk__in=job_ids).values("status").annotate(n=Count("pk"))
        return {row["status"]: row["n"] for row in rows}


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    answer = response.json()
    assert set(answer) == ERROR_KEYS
    assert answer["error"]["code"] == code


# --- the list ----------------------------------------------------------------------------------


def test_list_pages_through_a_keys_jobs_newest_first(
    api: GatewayClient, make_key: Callable[..., str], e2e_db: Database
) -> None:
    key = make_key()
    submitted = [api.submit_ok(key, body()) for _ in range(5)]
    chat = api.submit_ok(
        key, {"model": "openai/ok", "messages": [{"role": "user", "content": "hi"}]}, path=CHAT
    )
    e2e_db.wait_for_jobs([*submitted, chat])

    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2, "request_type": "text_completion"}
    for _ in range(5):
        page = list_jobs(api, key, **params)
        assert page.status_code == 200, page.text
        answer = page.json()
        assert answer["object"] == "list"
        assert all(item["status"] == "completed" for item in answer["data"])
        assert all(item["request_type"] == "text_completion" for item in answer["data"])
        seen += [item["id"] for item in answer["data"]]
        if not answer["has_more"]:
            break
        params["after"] = answer["last_id"]
    assert seen == submitted[::-1]

    everything = list_jobs(api, key).json()
    assert [item["id"] for item in everything["data"]] == [chat, *submitted[::-1]]
    assert everything["data"][0]["request_type"] == "chat_completion"
    assert list_jobs(api, make_key()).json()["data"] == []  # another key sees none of them


def test_list_refuses_bad_query_parameters(api: GatewayClient, make_key: Callable[..., str]):
    key = make_key()
    for params, param in [
        ({"limit": 0}, "limit"),
        ({"status": "done"}, "status"),
        ({"after": "nope"}, "after"),
        ({"after": str(uuid.uuid4())}, "after"),
        ({"order": "asc"}, "order"),
    ]:
        response = list_jobs(api, key, **params)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param


# --- cancel ------------------------------------------------------------------------------------


def test_cancel_of_a_processing_job_stops_its_call_and_the_job_stays_cancelled(
    api: GatewayClient, make_key: Callable[..., str], gateway: Gateway
) -> None:
    key = make_key()
    job_id = api.submit_ok(key, body("openai/slow-3000"))
    wait_for_status(api, key, job_id, "processing")

    response = cancel(api, key, job_id)
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["completed_at"] is not None and cancelled["expires_at"] is not None

    time.sleep(4)  # past the moment the upstream would have answered
    poll = api.poll(key, job_id)
    assert poll.status_code == 200
    assert poll.json() == cancelled
    worker_log = gateway.logs()["worker-0"]
    assert f"job {job_id} was cancelled: its upstream call is stopped" in worker_log
    assert not re.search(rf"job {job_id}: no longer held.*result dropped", worker_log)
    listed = list_jobs(api, key, status="cancelled").json()["data"]
    assert [item["id"] for item in listed] == [job_id]


def test_cancel_of_a_pending_job_never_sends_it_upstream(
    api: GatewayClient, make_key: Callable[..., str], e2e_db: Database, upstream: FakeUpstream
) -> None:
    """Slow jobs fill the worker, so the next job waits as pending; it is cancelled there and
    never claimed. Cancelling the slow jobs then frees the worker at once: their calls stop."""
    key = make_key()
    with ThreadPoolExecutor(8) as pool:
        fillers = list(
            pool.map(lambda _: api.submit_ok(key, body("openai/slow-20000")), range(FILLERS))
        )
    _wait_until_the_worker_is_full(e2e_db, fillers)

    waiting = api.submit_ok(key, body("openai/slow-19999"))
    time.sleep(1.5)  # longer than the worker's poll interval: it would have claimed it by now
    assert api.poll(key, waiting).json()["status"] == "pending"
    response = cancel(api, key, waiting)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda job_id: cancel(api, key, job_id).status_code, fillers))
    assert set(answers) == {200}
    started = time.monotonic()
    after = api.submit_ok(key, body())
    assert api.poll_until_done(key, after).json()["status"] == "completed"
    assert time.monotonic() - started < 15  # the slow calls (20 s) no longer hold the worker

    assert statuses(e2e_db, [*fillers, waiting]) == {"cancelled": FILLERS + 1}
    assert "slow-19999" not in upstream.stats()["by_model"]
    assert api.poll(key, waiting).json()["status"] == "cancelled"


def _wait_until_the_worker_is_full(e2e_db: Database, fillers: list[str]) -> None:
    """Until the worker has claimed all it has room for (what another test left running may
    take a few slots): no filler pending, or the number processing steady for a while."""
    deadline = time.monotonic() + JOB_TIMEOUT
    last, steady_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        counts = statuses(e2e_db, fillers)
        processing = counts.get("processing", 0)
        if processing == len(fillers):
            return
        if processing != last:
            last, steady_since = processing, time.monotonic()
        elif processing and time.monotonic() - steady_since > 2:
            return
        time.sleep(0.1)
    raise AssertionError(f"the worker did not fill up: {statuses(e2e_db, fillers)}")


def test_cancel_of_a_finished_job_is_409(api: GatewayClient, make_key: Callable[..., str]):
    key = make_key()
    job_id = api.submit_ok(key, body())
    done = api.poll_until_done(key, job_id).json()
    assert done["status"] == "completed"
    assert_error(cancel(api, key, job_id), 409, "job_not_cancellable")
    assert api.poll(key, job_id).json() == done


def test_cancel_of_an_invisible_job_is_404(api: GatewayClient, make_key: Callable[..., str]):
    key, other = make_key(), make_key()
    job_id = api.submit_ok(key, body("openai/slow-500"))
    assert_error(cancel(api, key, str(uuid.uuid4())), 404, "job_not_found")
    assert_error(cancel(api, other, job_id), 404, "job_not_found")
    assert_error(cancel(api, key, job_id, path=CHAT), 404, "job_not_found")
    assert api.poll_until_done(key, job_id).json()["status"] == "completed"
