"""The Python client and its CLI against the real web server and worker (and the fake upstream):
typed results for each request type, a failed job's error shape, cancel, and
``gateway-client submit --wait`` run as a user runs it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

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
    JobCancelledError,
    JobFailedError,
)
from harness.upstream import UPSTREAM_OPENAI_KEY, FakeUpstream, embedding_of, reply_text
from tests.e2e.conftest import JOB_TIMEOUT

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.e2e.conftest import Gateway as Stack

pytestmark = [pytest.mark.e2e]

CLI = str(Path(sys.executable).with_name("gateway-client"))


def unique(label: str) -> str:
    return f"{label} {uuid.uuid4().hex}"


def chat(model: str, text: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


@pytest.fixture
def key(make_key: Callable[..., str]) -> str:
    return make_key()


@pytest.fixture
def client(gateway: Stack, key: str) -> Iterator[Gateway]:
    with Gateway(gateway.base_url, key) as made:
        yield made


def test_a_chat_completion_comes_back_as_the_sdks_chat_completion(
    client: Gateway, upstream: FakeUpstream
) -> None:
    text = unique("Say hi")

    result = client.run(CHAT, chat("openai/ok", text), timeout=JOB_TIMEOUT)

    assert isinstance(result, ChatCompletion)
    assert result.choices[0].message.content == reply_text(text)
    assert len(upstream.calls(prompt=text)) == 1


def test_embeddings_come_back_as_the_sdks_embedding_response(client: Gateway) -> None:
    texts = [unique("first"), unique("second")]

    result = client.run(EMBEDDINGS, {"model": "openai/ok", "input": texts}, timeout=JOB_TIMEOUT)

    assert isinstance(result, CreateEmbeddingResponse)
    assert [item.embedding for item in result.data] == [embedding_of(t) for t in texts]


def test_the_async_client_runs_a_response_and_a_text_completion(gateway: Stack, key: str) -> None:
    asked, prompted = unique("Respond"), unique("Complete")

    async def both() -> tuple[Response, Completion]:
        async with AsyncGateway(gateway.base_url, key) as client:
            return await asyncio.gather(
                client.run(RESPONSES, {"model": "openai/ok", "input": asked}, timeout=JOB_TIMEOUT),
                client.run(
                    COMPLETIONS, {"model": "openai/ok", "prompt": prompted}, timeout=JOB_TIMEOUT
                ),
            )

    response, completion = asyncio.run(both())

    assert isinstance(response, Response)
    assert response.output_text == reply_text(asked)
    assert isinstance(completion, Completion)
    assert completion.choices[0].text == reply_text(prompted)


def test_a_failed_job_raises_with_the_gateways_error_shape(client: Gateway) -> None:
    submitted = client.submit(CHAT, chat("openai/bad-400", unique("fails")))

    with pytest.raises(JobFailedError) as raised:
        client.wait(CHAT, submitted.id, timeout=JOB_TIMEOUT)

    assert raised.value.job.id == submitted.id
    assert raised.value.job.status_code == 400
    error = raised.value.error
    assert error.status_code == 400
    assert error.is_bifrost_error is False
    assert error.event_id and error.error.message
    assert error.extra_fields["request_type"] == "chat_completion"
    assert UPSTREAM_OPENAI_KEY not in str(raised.value)


def test_a_refused_submit_raises_api_error_naming_the_param(client: Gateway) -> None:
    with pytest.raises(APIError) as raised:
        client.submit(CHAT, {**chat("openai/ok", "hi"), "temperature": 9})

    assert raised.value.status_code == 400
    assert raised.value.param == "temperature"


def test_a_cancelled_job_is_got_as_cancelled_and_its_wait_raises(client: Gateway) -> None:
    submitted = client.submit(CHAT, chat("openai/slow-10000", unique("cancel me")))

    cancelled = client.cancel(CHAT, submitted.id)

    assert cancelled.status == "cancelled"
    assert client.get(CHAT, submitted.id).status == "cancelled"
    with pytest.raises(JobCancelledError):
        client.wait(CHAT, submitted.id, timeout=JOB_TIMEOUT)


# --- the CLI -----------------------------------------------------------------------------------
def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run(
        [CLI, *args],
        env={**environment, **(env or {})},
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT + 30,
    )


def test_cli_submit_wait_prints_the_reply_with_url_and_key_from_the_environment(
    gateway: Stack, key: str
) -> None:
    text = unique("Say hi")
    # An interactive terminal as far as rich can tell, so the progress indicator is drawn.
    terminal = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"}
    env = {"GATEWAY_URL": gateway.base_url, "GATEWAY_API_KEY": key, **terminal}

    done = run_cli("submit", "--model", "openai/slow-2500", "--prompt", text, "--wait", env=env)

    assert done.returncode == 0, done.stderr
    assert done.stdout == reply_text(text) + "\n"
    # The progress indicator: the job's state as each poll saw it, and the time spent.
    assert re.search(r"job [0-9a-f-]{36}: processing", done.stderr), done.stderr
    assert "0:00:0" in done.stderr


def test_cli_flags_pick_the_type_and_the_gateway(gateway: Stack, key: str) -> None:
    text = unique("embed")
    flags = ("--url", gateway.base_url, "--api-key", key, "--type", "embeddings")

    done = run_cli("submit", *flags, "--model", "openai/ok", "--prompt", text, "--wait", "--json")

    assert done.returncode == 0, done.stderr
    result = CreateEmbeddingResponse.model_validate_json(done.stdout)
    assert result.data[0].embedding == embedding_of(text)


def test_cli_submit_then_wait_by_id(gateway: Stack, key: str) -> None:
    text = unique("later")
    env = {"GATEWAY_URL": gateway.base_url, "GATEWAY_API_KEY": key}
    params = ("--param", "max_tokens=16", "--param", "temperature=0.5")

    submit = ("submit", "--type", "completions", "--model", "openai/ok", "--prompt", text)

    submitted = run_cli(*submit, *params, env=env)
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    assert job["status"] == "pending" and job["type"] == "completions"

    done = run_cli("wait", "--type", "completions", job["id"], env=env)

    assert done.returncode == 0, done.stderr
    assert done.stdout == reply_text(text) + "\n"


def test_cli_reports_a_failed_job_and_exits_1(gateway: Stack, key: str) -> None:
    env = {"GATEWAY_URL": gateway.base_url, "GATEWAY_API_KEY": key}

    failing = ("--model", "openai/bad-400", "--prompt", unique("fails"))

    done = run_cli("submit", *failing, "--wait", env=env)

    assert done.returncode == 1
    assert done.stdout == ""
    assert "failed (HTTP 400" in done.stderr
    assert '"request_type": "chat_completion"' in done.stderr
