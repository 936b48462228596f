"""Idempotency-Key over real HTTP, with a real worker: a retried submit is the same job, and the
upstream hears the request once."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
from openai.types import Completion

from harness.upstream import FakeUpstream, reply_text

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.e2e.conftest import Database, GatewayClient

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("gateway")]

CHAT = "/v1/async/chat/completions"


def unique(label: str) -> str:
    return f"{label} {uuid.uuid4().hex}"


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": f'"{key}"'}


def test_a_retried_submit_is_the_same_job_and_one_upstream_call(
    api: GatewayClient, make_key: Callable[..., str], upstream: FakeUpstream
) -> None:
    key = make_key()
    prompt = unique("Say hi")
    body = {"model": "openai/ok", "prompt": prompt, "max_tokens": 5}
    idempotency = keyed(uuid.uuid4().hex)

    first = api.submit(key, body, headers=idempotency)
    assert first.status_code == 202, first.text
    job_id = first.json()["id"]
    done = api.poll_until_done(key, job_id).json()

    retried = api.submit(key, body, headers=idempotency)

    assert retried.status_code == 202, retried.text
    assert retried.headers["Location"] == first.headers["Location"]
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert retried.json() == done
    completion = Completion.model_validate(retried.json()["result"])
    assert [choice.text for choice in completion.choices] == [reply_text(prompt)]
    assert len(upstream.calls(prompt=prompt)) == 1


def test_identical_submits_at_once_make_one_job_and_one_upstream_call(
    api: GatewayClient, make_key: Callable[..., str], upstream: FakeUpstream, e2e_db: Database
) -> None:
    key = make_key()
    text = unique("Say hi")
    body = {"model": "openai/slow-200", "messages": [{"role": "user", "content": text}]}
    idempotency = keyed(uuid.uuid4().hex)

    def submit(_: int) -> Any:
        return api.submit(key, body, headers=idempotency, path=CHAT)

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(submit, range(8)))

    assert {response.status_code for response in responses} == {202}
    [job_id] = {response.json()["id"] for response in responses}
    assert {response.headers["Location"] for response in responses} == {
        responses[0].headers["Location"]
    }
    replayed = [response.headers.get("Idempotent-Replayed") for response in responses]
    assert replayed.count(None) == 1, "one submit made the job; the others answered it"
    assert api.poll_until_done(key, job_id, path=CHAT).json()["status"] == "completed"
    with e2e_db.access():
        from jobs.models import AsyncJob

        assert AsyncJob.objects.filter(request__messages__0__content=text).count() == 1
    assert len(upstream.calls(prompt=text)) == 1


def test_the_key_with_another_body_is_422_and_a_malformed_key_400(
    api: GatewayClient, make_key: Callable[..., str], upstream: FakeUpstream
) -> None:
    key = make_key()
    prompt = unique("Say hi")
    idempotency = keyed(uuid.uuid4().hex)
    first = api.submit(key, {"model": "openai/ok", "prompt": prompt}, headers=idempotency)
    assert first.status_code == 202, first.text

    other = api.submit(key, {"model": "openai/ok", "prompt": unique("other")}, headers=idempotency)
    malformed = api.submit(key, {"model": "openai/ok", "prompt": prompt}, headers=keyed(""))

    for response, status, code in [
        (other, 422, "idempotency_key_reused"),
        (malformed, 400, "invalid_idempotency_key"),
    ]:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert (error["code"], error["param"]) == (code, "Idempotency-Key")
