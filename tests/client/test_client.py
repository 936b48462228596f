"""The client against a scripted gateway (httpx.MockTransport): what it sends, how long it waits
between polls and after 429s, what it returns and what it raises."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from gateway_client import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    RESPONSES,
    APIError,
    AsyncGateway,
    Gateway,
    GatewayClientError,
    JobCancelledError,
    JobFailedError,
    RateLimitError,
    RequestType,
    WaitTimeout,
)
from harness.upstream import CHAT_PATH, EMBEDDINGS_PATH, OPENAI_PATH, RESPONSES_PATH, reply
from tests.client.fakes import FakeClock, ScriptedGateway, answer, error_shape, job

URL = "http://gateway.test"
KEY = "sk-bf-client-test"
JOB_ID = job("pending")["id"]
CHAT_BODY = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Say hi"}]}


def chat_result(text: str = "Say hi") -> dict[str, Any]:
    return reply(CHAT_PATH, "r1", "gpt-4o-mini", (text,), {}, "")


def gateway_for(script: ScriptedGateway, clock: FakeClock | None = None) -> Gateway:
    return Gateway(URL, KEY, transport=script.transport, clock=clock or FakeClock())


def completed(result: dict[str, Any] | None = None) -> httpx.Response:
    return answer(200, job("completed", result=result or chat_result(), status_code=200))


# --- waiting -----------------------------------------------------------------------------------
def test_wait_sleeps_as_long_as_each_202s_retry_after_asks() -> None:
    script = ScriptedGateway(
        [answer(202, job("pending"), "3"), answer(202, job("processing"), "7"), completed()]
    )
    clock = FakeClock()

    result = gateway_for(script, clock).wait(CHAT, JOB_ID)

    assert clock.sleeps == [3.0, 7.0]
    assert isinstance(result, ChatCompletion)
    assert result.choices[0].message.content == "reply to: Say hi"
    assert [r.url.path for r in script.requests] == [f"/v1/async/chat/completions/{JOB_ID}"] * 3


def test_wait_without_retry_after_backs_off_exponentially_up_to_a_cap() -> None:
    script = ScriptedGateway([answer(202, job("processing"))] * 8 + [completed()])
    clock = FakeClock()

    gateway_for(script, clock).wait(CHAT, JOB_ID)

    assert clock.sleeps == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_a_retry_after_as_an_http_date_is_honoured() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    script = ScriptedGateway([answer(202, job("pending"), when), completed()])
    clock = FakeClock()

    gateway_for(script, clock).wait(CHAT, JOB_ID)

    [slept] = clock.sleeps
    assert 27 <= slept <= 30


def test_a_retry_after_longer_than_a_minute_is_cut_to_a_minute() -> None:
    script = ScriptedGateway([answer(202, job("pending"), "3600"), completed()])
    clock = FakeClock()

    gateway_for(script, clock).wait(CHAT, JOB_ID)

    assert clock.sleeps == [60.0]


def test_a_throttled_poll_is_asked_again_after_its_retry_after() -> None:
    throttled = error_shape(429, "rate_limited", "Too many polls")
    script = ScriptedGateway(
        [answer(429, throttled, "4"), answer(202, job("pending")), completed()]
    )
    clock = FakeClock()

    result = gateway_for(script, clock).wait(CHAT, JOB_ID)

    assert clock.sleeps == [4.0, 0.25]
    assert result.choices[0].message.content == "reply to: Say hi"


def test_a_poll_that_loses_its_connection_is_asked_again() -> None:
    script = ScriptedGateway([httpx.ConnectError("refused"), answer(503, {}), completed()])
    clock = FakeClock()

    gateway_for(script, clock).wait(CHAT, JOB_ID)

    assert clock.sleeps == [1.0, 2.0]
    assert len(script.requests) == 3


def test_wait_gives_up_after_its_timeout_with_the_last_job_seen() -> None:
    script = ScriptedGateway([answer(202, job("processing"), "4")] * 4)
    clock = FakeClock()

    with pytest.raises(WaitTimeout) as raised:
        gateway_for(script, clock).wait(CHAT, JOB_ID, timeout=10)

    assert clock.sleeps == [4.0, 4.0, 2.0]  # the last sleep ends at the deadline, then one poll
    assert raised.value.job.status == "processing"
    assert raised.value.job.id == JOB_ID
    assert isinstance(raised.value, TimeoutError)


def test_on_poll_sees_every_state_of_the_job() -> None:
    script = ScriptedGateway(
        [answer(202, job("pending")), answer(202, job("processing")), completed()]
    )
    seen: list[str] = []

    gateway_for(script).wait(CHAT, JOB_ID, on_poll=lambda polled: seen.append(polled.status))

    assert seen == ["pending", "processing", "completed"]


# --- outcomes ----------------------------------------------------------------------------------
def test_a_failed_job_raises_job_failed_error_with_the_gateways_error_shape() -> None:
    failure = error_shape(
        500,
        "upstream_error",
        "The provider answered 500",
        attempts=[{"provider": "openai", "model": "gpt-4o-mini", "status": 500}],
    )
    script = ScriptedGateway([answer(200, job("failed", error=failure, status_code=500))])

    with pytest.raises(JobFailedError) as raised:
        gateway_for(script).wait(CHAT, JOB_ID)

    error = raised.value.error
    assert error.status_code == 500
    assert error.is_bifrost_error is False
    assert error.error.code == "upstream_error"
    assert error.error.message == "The provider answered 500"
    assert error.extra_fields["attempts"] == [
        {"provider": "openai", "model": "gpt-4o-mini", "status": 500}
    ]
    assert raised.value.job.status_code == 500
    assert "upstream_error" in str(raised.value)


def test_a_cancelled_job_raises_job_cancelled_error() -> None:
    script = ScriptedGateway([answer(200, job("cancelled"))])

    with pytest.raises(JobCancelledError) as raised:
        gateway_for(script).wait(CHAT, JOB_ID)

    assert raised.value.job.completed_at == datetime(2026, 12, 7, 9, 0, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("request_type", "upstream_path", "path", "openai_type"),
    [
        (COMPLETIONS, OPENAI_PATH, "/v1/async/completions", Completion),
        (CHAT, CHAT_PATH, "/v1/async/chat/completions", ChatCompletion),
        (RESPONSES, RESPONSES_PATH, "/v1/async/responses", Response),
        (EMBEDDINGS, EMBEDDINGS_PATH, "/v1/async/embeddings", CreateEmbeddingResponse),
    ],
)
def test_each_request_type_is_submitted_at_its_route_and_its_result_is_its_openai_type(
    request_type: RequestType[Any], upstream_path: str, path: str, openai_type: type
) -> None:
    result = reply(upstream_path, "r1", "m", ("Say hi",), {}, "")
    script = ScriptedGateway([answer(202, job("pending")), completed(result)])

    got = gateway_for(script).run(request_type, {"model": "openai/m", "input": "Say hi"})

    assert type(got) is openai_type
    assert got == openai_type.model_validate(result)
    assert [(r.method, r.url.path) for r in script.requests] == [
        ("POST", path),
        ("GET", f"{path}/{JOB_ID}"),
    ]


# --- submit, get, cancel -----------------------------------------------------------------------
def test_submit_sends_the_body_key_and_headers_and_returns_the_pending_job() -> None:
    script = ScriptedGateway([answer(202, job("pending"))])

    submitted = gateway_for(script).submit(
        CHAT, CHAT_BODY, ttl=120, idempotency_key='order "42"', webhook="billing"
    )

    assert submitted.id == JOB_ID
    assert submitted.status == "pending"
    assert submitted.created_at == datetime(2026, 12, 7, 9, tzinfo=UTC)
    assert submitted.result is None
    [sent] = script.requests
    assert sent.method == "POST"
    assert sent.url == f"{URL}/v1/async/chat/completions"
    assert script.bodies() == [CHAT_BODY]
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.headers["x-bf-async-job-result-ttl"] == "120"
    assert sent.headers["Idempotency-Key"] == '"order \\"42\\""'
    assert sent.headers["x-bf-async-webhook"] == "billing"


def test_a_throttled_submit_is_sent_again_after_its_retry_after() -> None:
    throttled = error_shape(429, "rate_limited", "Too many requests")
    script = ScriptedGateway([answer(429, throttled, "2"), answer(202, job("pending"))])
    clock = FakeClock()

    submitted = gateway_for(script, clock).submit(CHAT, CHAT_BODY)

    assert submitted.status == "pending"
    assert clock.sleeps == [2.0]
    assert script.bodies() == [CHAT_BODY, CHAT_BODY]


def test_a_submit_still_throttled_after_the_retries_raises_rate_limit_error() -> None:
    throttled = error_shape(429, "pending_limit", "Too many pending jobs")
    script = ScriptedGateway([answer(429, throttled)] * 6)
    clock = FakeClock()

    with pytest.raises(RateLimitError) as raised:
        gateway_for(script, clock).submit(CHAT, CHAT_BODY)

    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0, 16.0]  # no Retry-After: the backoff
    assert raised.value.status_code == 429
    assert raised.value.code == "pending_limit"


def test_a_refused_submit_raises_api_error_naming_the_param() -> None:
    refusal = error_shape(400, "invalid_request", "must be at most 2", param="temperature")
    script = ScriptedGateway([answer(400, refusal)])

    with pytest.raises(APIError) as raised:
        gateway_for(script).submit(CHAT, {**CHAT_BODY, "temperature": 9})

    assert raised.value.status_code == 400
    assert raised.value.param == "temperature"
    assert raised.value.body is not None and raised.value.body.error.message == "must be at most 2"
    assert len(script.requests) == 1


def test_a_submit_that_loses_its_answer_is_not_sent_twice_without_an_idempotency_key() -> None:
    script = ScriptedGateway([httpx.ReadTimeout("no answer")])

    with pytest.raises(httpx.ReadTimeout):
        gateway_for(script).submit(CHAT, CHAT_BODY)

    assert len(script.requests) == 1


def test_a_submit_with_an_idempotency_key_is_sent_again_after_a_lost_answer() -> None:
    script = ScriptedGateway([httpx.ReadTimeout("no answer"), answer(202, job("pending"))])

    submitted = gateway_for(script).submit(CHAT, CHAT_BODY, idempotency_key="order-42")

    assert submitted.id == JOB_ID
    assert [r.headers["Idempotency-Key"] for r in script.requests] == ['"order-42"'] * 2


def test_an_answer_that_is_not_the_error_shape_still_raises_api_error() -> None:
    page = httpx.Response(502, text="<html>Bad gateway</html>")
    script = ScriptedGateway([page])

    with pytest.raises(APIError) as raised:
        gateway_for(script).cancel(CHAT, JOB_ID)

    assert raised.value.status_code == 502
    assert raised.value.body is None
    assert "Bad gateway" in str(raised.value)


def test_get_returns_the_job_with_its_parsed_result() -> None:
    script = ScriptedGateway([completed()])

    got = gateway_for(script).get(CHAT, JOB_ID)

    assert got.status == "completed"
    assert got.done
    assert isinstance(got.result, ChatCompletion)
    assert got.expires_at == datetime(2026, 12, 7, 10, 0, 5, tzinfo=UTC)


def test_cancel_posts_to_the_cancel_route_and_returns_the_cancelled_job() -> None:
    script = ScriptedGateway([answer(200, job("cancelled"))])

    cancelled = gateway_for(script).cancel(CHAT, JOB_ID)

    assert cancelled.status == "cancelled"
    [sent] = script.requests
    assert (sent.method, sent.url.path) == ("POST", f"/v1/async/chat/completions/{JOB_ID}/cancel")


def test_cancelling_a_finished_job_raises_the_409() -> None:
    refusal = error_shape(409, "job_not_cancellable", "The job has already ended")
    script = ScriptedGateway([answer(409, refusal)])

    with pytest.raises(APIError) as raised:
        gateway_for(script).cancel(CHAT, JOB_ID)

    assert (raised.value.status_code, raised.value.code) == (409, "job_not_cancellable")


# --- configuration and the async client --------------------------------------------------------
def test_url_and_key_come_from_the_environment_when_not_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEWAY_URL", "http://from-env.test")
    monkeypatch.setenv("GATEWAY_API_KEY", "sk-bf-from-env")
    script = ScriptedGateway([answer(202, job("pending"))])

    Gateway(transport=script.transport).submit(CHAT, CHAT_BODY)

    [sent] = script.requests
    assert sent.url.host == "from-env.test"
    assert sent.headers["Authorization"] == "Bearer sk-bf-from-env"


def test_no_key_anywhere_is_an_error_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_API_KEY", raising=False)

    with pytest.raises(GatewayClientError, match="GATEWAY_API_KEY"):
        Gateway(URL)


def test_the_async_client_waits_the_same_way_and_returns_the_typed_result() -> None:
    script = ScriptedGateway(
        [
            answer(202, job("pending")),
            answer(202, job("pending")),
            answer(202, job("processing"), "2"),
            completed(),
        ]
    )
    clock = FakeClock()

    async def run() -> ChatCompletion:
        async with AsyncGateway(URL, KEY, transport=script.transport, clock=clock) as gateway:
            return await gateway.run(CHAT, CHAT_BODY)

    result = asyncio.run(run())

    assert result.choices[0].message.content == "reply to: Say hi"
    assert clock.sleeps == [0.25, 2.0]
    assert [r.method for r in script.requests] == ["POST", "GET", "GET", "GET"]


def test_the_async_client_raises_job_failed_error() -> None:
    failure = error_shape(502, "upstream_error", "Bad gateway upstream")
    script = ScriptedGateway([answer(200, job("failed", error=failure, status_code=502))])

    async def wait() -> None:
        async with AsyncGateway(URL, KEY, transport=script.transport) as gateway:
            await gateway.wait(CHAT, JOB_ID)

    with pytest.raises(JobFailedError) as raised:
        asyncio.run(wait())

    assert raised.value.error.error.message == "Bad gateway upstream"
