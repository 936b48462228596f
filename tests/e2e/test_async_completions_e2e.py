"""The async completions API over real HTTP, run by a real worker against a local upstream."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from openai.types import Completion

from harness.upstream import (
    ANTHROPIC_PATH,
    OPENAI_PATH,
    UPSTREAM_ANTHROPIC_KEY,
    UPSTREAM_OPENAI_KEY,
    FakeUpstream,
    reply_text,
)
from tests.helpers import ERROR_DETAIL_KEYS, ERROR_KEYS

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.e2e.conftest import Database, Gateway, GatewayClient

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("gateway")]


def unique(label: str) -> str:
    """A prompt no other test (or earlier run) has sent, so upstream counts are this test's."""
    return f"{label} {uuid.uuid4().hex}"


def timestamp(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


def submit_all(api: GatewayClient, key: str, bodies: list[dict[str, Any]]) -> list[str]:
    """Submit concurrently, as a batch pipeline would; every submit must be accepted."""
    with ThreadPoolExecutor(max_workers=32) as pool:
        return list(pool.map(lambda body: api.submit_ok(key, body), bodies))


def test_submit_then_poll_returns_the_completion(
    api: GatewayClient, make_key: Callable[..., str], upstream: FakeUpstream
) -> None:
    key = make_key()
    prompt = unique("Say hi")

    submitted = api.submit(key, {"model": "openai/ok", "prompt": prompt, "max_tokens": 5}, ttl=600)

    assert submitted.status_code == 202, submitted.text
    job = submitted.json()
    assert job["status"] == "pending"
    assert timestamp(job["created_at"])
    assert [job[name] for name in ("expires_at", "completed_at", "status_code")] == [None] * 3
    assert job["result"] is None and job["error"] is None
    location = submitted.headers["Location"]
    assert location.endswith(f"/v1/async/completions/{job['id']}")
    assert api.get(key, location).status_code in (200, 202)
    done = api.poll_until_done(key, job["id"]).json()
    assert done["status"] == "completed"
    assert done["status_code"] == 200
    assert done["error"] is None
    completion = Completion.model_validate(done["result"])
    assert completion.object == "text_completion"
    assert [choice.text for choice in completion.choices] == [reply_text(prompt)]
    created, completed = timestamp(done["created_at"]), timestamp(done["completed_at"])
    assert created <= completed
    assert timestamp(done["expires_at"]) - completed == timedelta(seconds=600)
    [call] = upstream.calls(prompt=prompt)
    assert call.path == OPENAI_PATH
    assert call.headers["authorization"] == f"Bearer {UPSTREAM_OPENAI_KEY}"
    assert not any(key in value for value in call.headers.values())


def test_array_prompt_returns_one_choice_per_prompt(
    api: GatewayClient, make_key: Callable[..., str]
) -> None:
    key = make_key()
    prompts = [unique("first"), unique("second"), unique("third")]

    job_id = api.submit_ok(key, {"model": "openai/ok", "prompt": prompts})

    done = api.poll_until_done(key, job_id).json()
    assert done["status"] == "completed"
    completion = Completion.model_validate(done["result"])
    assert [choice.text for choice in completion.choices] == [reply_text(p) for p in prompts]
    assert [choice.index for choice in completion.choices] == [0, 1, 2]


def test_anthropic_model_is_served_by_the_messages_api_as_a_text_completion(
    api: GatewayClient, make_key: Callable[..., str], upstream: FakeUpstream
) -> None:
    key = make_key()
    prompt = unique("Hello Claude")

    # The x-bf-vk header authenticates as well as a bearer token does.
    job_id = api.submit_ok(
        "", {"model": "anthropic/ok", "prompt": prompt, "max_tokens": 20}, headers={"x-bf-vk": key}
    )

    done = api.poll_until_done(key, job_id).json()
    assert done["status"] == "completed", done
    completion = Completion.model_validate(done["result"])
    assert completion.object == "text_completion"
    assert [choice.text for choice in completion.choices] == [reply_text(prompt)]
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    [call] = upstream.calls(prompt=prompt)
    assert call.path == ANTHROPIC_PATH
    assert call.headers["x-api-key"] == UPSTREAM_ANTHROPIC_KEY
    assert call.headers["anthropic-version"]
    assert "authorization" not in call.headers


def test_job_falls_back_after_an_upstream_500(
    api: GatewayClient, make_key: Callable[..., str], upstream: FakeUpstream
) -> None:
    key = make_key()
    prompt = unique("fall back")

    job_id = api.submit_ok(
        key, {"model": "openai/fail-500", "prompt": prompt, "fallbacks": ["openai/ok"]}
    )

    done = api.poll_until_done(key, job_id).json()
    assert done["status"] == "completed", done
    completion = Completion.model_validate(done["result"])
    assert completion.model == "ok"
    assert [choice.text for choice in completion.choices] == [reply_text(prompt)]
    # GATEWAY_RETRIES=2: three tries of the broken target, then the fallback once.
    calls = upstream.calls(prompt=prompt)
    assert [(c.model, c.status) for c in calls] == [("fail-500", 500)] * 3 + [("ok", 200)]


def test_job_is_retried_after_an_upstream_503(
    api: GatewayClient, make_key: Callable[..., str], upstream: FakeUpstream
) -> None:
    key = make_key()
    prompt = unique("retry me")

    job_id = api.submit_ok(key, {"model": "openai/flaky-503", "prompt": prompt})

    done = api.poll_until_done(key, job_id).json()
    assert done["status"] == "completed", done
    assert Completion.model_validate(done["result"]).choices[0].text == reply_text(prompt)
    calls = upstream.calls(prompt=prompt)
    assert [(c.model, c.status) for c in calls] == [("flaky-503", 503), ("flaky-503", 200)]


def test_job_fails_at_once_after_an_upstream_400(
    api: GatewayClient, make_key: Callable[..., str], upstream: FakeUpstream
) -> None:
    key = make_key()
    prompt = unique("refused")

    job_id = api.submit_ok(key, {"model": "openai/bad-400", "prompt": prompt})

    polled = api.poll_until_done(key, job_id)
    assert polled.status_code == 200
    done = polled.json()
    assert done["status"] == "failed"
    assert done["status_code"] == 400
    assert done["result"] is None
    error = done["error"]
    assert set(error) == ERROR_KEYS
    assert set(error["error"]) == ERROR_DETAIL_KEYS
    assert error["is_bifrost_error"] is False
    assert error["status_code"] == 400
    assert error["type"] == error["error"]["type"] == "invalid_request_error"
    assert error["error"]["param"] == "prompt"
    assert error["error"]["event_id"] == error["event_id"]
    # The provider's own explanation is relayed, minus the key it echoed.
    assert "bad-400 rejects every request" in error["error"]["message"]
    assert UPSTREAM_OPENAI_KEY not in error["error"]["message"]
    extra = error["extra_fields"]
    assert extra["provider"] == "openai"
    assert extra["model_requested"] == "openai/bad-400"
    assert extra["request_type"] == "text_completion"
    assert [(a["provider"], a["model"], a["status_code"]) for a in extra["attempts"]] == [
        ("openai", "bad-400", 400)
    ]
    assert len(upstream.calls(prompt=prompt)) == 1


def test_poll_returns_404_for_another_keys_job(
    api: GatewayClient, make_key: Callable[..., str]
) -> None:
    owner, stranger = make_key(), make_key()
    job_id = api.submit_ok(owner, {"model": "openai/ok", "prompt": unique("mine")})
    api.poll_until_done(owner, job_id)

    response = api.poll(stranger, job_id)

    assert response.status_code == 404
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["is_bifrost_error"] is True
    assert body["error"]["type"] == "not_found_error"
    assert api.poll(owner, job_id).status_code == 200


def test_expired_job_is_purged_and_then_404(
    api: GatewayClient, make_key: Callable[..., str], e2e_db: Database
) -> None:
    from jobs import services
    from jobs.models import AsyncJob

    key = make_key()
    job_id = api.submit_ok(key, {"model": "openai/ok", "prompt": unique("short-lived")}, ttl=1)
    done = api.poll_until_done(key, job_id).json()
    expires_at = timestamp(done["expires_at"])
    assert expires_at - timestamp(done["completed_at"]) == timedelta(seconds=1)

    time.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 0.5)
    with e2e_db.access():
        purged = services.purge_expired_jobs()
        left = AsyncJob.objects.filter(pk=job_id).exists()

    assert purged >= 1
    assert not left
    assert api.poll(key, job_id).status_code == 404


def test_two_hundred_jobs_submitted_at_once_all_complete(
    api: GatewayClient, make_key: Callable[..., str], e2e_db: Database
) -> None:
    key = make_key()
    prompts = [unique(f"batch {i}") for i in range(200)]

    job_ids = submit_all(api, key, [{"model": "openai/ok", "prompt": p} for p in prompts])

    assert len(set(job_ids)) == 200
    e2e_db.wait_for_jobs(job_ids, timeout=120)
    with ThreadPoolExecutor(max_workers=16) as pool:
        polled = list(pool.map(lambda job_id: api.poll(key, job_id), job_ids))
    assert {response.status_code for response in polled} == {200}
    for prompt, response in zip(prompts, polled, strict=True):
        body = response.json()
        assert body["status"] == "completed", body
        assert Completion.model_validate(body["result"]).choices[0].text == reply_text(prompt)


def test_worker_holds_at_least_100_calls_in_flight(
    api: GatewayClient, make_key: Callable[..., str], e2e_db: Database, upstream: FakeUpstream
) -> None:
    key = make_key()

    job_ids = submit_all(
        api, key, [{"model": "openai/slow-2000", "prompt": unique(f"slow {i}")} for i in range(150)]
    )

    e2e_db.wait_for_jobs(job_ids, timeout=120)
    peak = upstream.max_in_flight("slow-2000")
    assert peak >= 100, f"at most {peak} upstream calls were in flight at once"
    assert len(upstream.calls(model="slow-2000")) == 150


def test_no_secret_appears_in_responses_rows_or_logs(
    api: GatewayClient, make_key: Callable[..., str], e2e_db: Database, gateway: Gateway
) -> None:
    from jobs.models import AsyncJob

    key = make_key()
    # Both providers echo their key in a 400; a 500 with no fallback fails the job too.
    job_ids = [
        api.submit_ok(key, {"model": model, "prompt": unique("leak?")})
        for model in ("openai/bad-400", "anthropic/bad-400", "openai/fail-500", "openai/ok")
    ]
    for job_id in job_ids:
        api.poll_until_done(key, job_id)
    assert api.submit(key, {"model": "openai/ok", "prompt": 1}).status_code == 400
    assert api.submit(key + "x", {"model": "openai/ok", "prompt": "x"}).status_code == 401

    with e2e_db.access():
        rows = [
            json.dumps([job.result, job.error])
            for job in AsyncJob.objects.filter(virtual_key_id__in=e2e_db.key_ids)
        ]
    secrets = [UPSTREAM_OPENAI_KEY, UPSTREAM_ANTHROPIC_KEY, *e2e_db.raw_keys]
    places = {
        "response bodies": api.bodies,
        "job rows": rows,
        **{f"{name} log": [text] for name, text in gateway.logs().items()},
    }
    for place, texts in places.items():
        for secret in secrets:
            assert not any(secret in text for text in texts), f"{secret[:10]}… found in {place}"
