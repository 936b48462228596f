"""Chat completions, responses and embeddings over real HTTP, run by a real worker against the
fake upstream: each type's routes, its result parsed with the openai SDK's type, and the parts
of the contract that differ by type (404 across types, refusals at submit, the failed job's
``request_type``)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from harness.upstream import ANTHROPIC_PATH, UPSTREAM_OPENAI_KEY, FakeUpstream, reply_text
from tests.helpers import ERROR_KEYS

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.e2e.conftest import GatewayClient

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("gateway")]

CHAT = "/v1/async/chat/completions"
RESPONSES = "/v1/async/responses"
EMBEDDINGS = "/v1/async/embeddings"


def unique(label: str) -> str:
    return f"{label} {uuid.uuid4().hex}"


def chat_body(model: str, text: str, **params: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **params}


def run(api: GatewayClient, key: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """Submit to ``path``, check the 202 and its Location, poll until done; the final job."""
    submitted = api.submit(key, body, path=path)
    assert submitted.status_code == 202, submitted.text
    job = submitted.json()
    assert job["status"] == "pending"
    assert submitted.headers["Location"].endswith(f"{path}/{job['id']}")
    return dict(api.poll_until_done(key, job["id"], path=path).json())


def test_chat_completion_on_an_openai_provider(
    api: GatewayClient, make_key: Callable[..., str], upstream: FakeUpstream
) -> None:
    key = make_key()
    text = unique("Say hi")
    body = chat_body(
        "openai/ok",
        text,
        n=2,
        temperature=0.2,
        max_completion_tokens=20,
        response_format={"type": "json_object"},
    )

    done = run(api, key, CHAT, body)

    assert done["status"] == "completed", done
    assert done["status_code"] == 200
    completion = ChatCompletion.model_validate(done["result"])
    assert completion.object == "chat.completion"
    assert [choice.message.content for choice in completion.choices] == [reply_text(text)] * 2
    assert [choice.message.role for choice in completion.choices] == ["assistant"] * 2
    [call] = upstream.calls(prompt=text)
    assert call.path == "/v1/chat/completions"
    assert call.headers["authorization"] == f"Bearer {UPSTREAM_OPENAI_KEY}"


def test_chat_completion_on_anthropic_is_translated_both_ways(
    api: GatewayClient, make_key: Callable[..., str], upstream: FakeUpstream
) -> None:
    key = make_key()
    text = unique("Hello Claude")
    body = {
        "model": "anthropic/ok",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": text}]},
        ],
        "stop": ["END"],
    }

    done = run(api, key, CHAT, body)

    assert done["status"] == "completed", done
    completion = ChatCompletion.model_validate(done["result"])
    [choice] = completion.choices
    assert choice.message.content == reply_text(text)
    assert choice.finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    [call] = upstream.calls(prompt=text)
    assert call.path == ANTHROPIC_PATH


def test_a_tool_call_from_anthropic_comes_back_as_openai_tool_calls(
    api: GatewayClient, make_key: Callable[..., str]
) -> None:
    key = make_key()
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    body = chat_body("anthropic/ok", unique("What is the weather in Paris?"), tools=[tool])

    done = run(api, key, CHAT, body)

    assert done["status"] == "completed", done
    [choice] = ChatCompletion.model_validate(done["result"]).choices
    assert choice.finish_reason == "tool_calls"
    [tool_call] = choice.message.tool_calls or []
    assert tool_call.type == "function"
    assert tool_call.function.name == "get_weather"  # type: ignore[union-attr]
    assert tool_call.function.arguments == '{"city": "Paris"}'  # type: ignore[union-attr]


def test_response_on_an_openai_provider(
    api: GatewayClient, make_key: Callable[..., str], upstream: FakeUpstream
) -> None:
    key = make_key()
    text = unique("Tell me a story")

    done = run(
        api,
        key,
        RESPONSES,
        {"model": "openai/ok", "input": text, "instructions": "Be brief.", "max_output_tokens": 50},
    )

    assert done["status"] == "completed", done
    response = Response.model_validate(done["result"])
    assert response.object == "response"
    assert response.output_text == reply_text(text)
    [call] = upstream.calls(prompt=text)
    assert call.path == "/v1/responses"


def test_embeddings_on_an_openai_provider(
    api: GatewayClient, make_key: Callable[..., str], upstream: FakeUpstream
) -> None:
    key = make_key()
    inputs = [unique("first"), unique("second")]

    done = run(api, key, EMBEDDINGS, {"model": "openai/ok", "input": inputs, "dimensions": 8})

    assert done["status"] == "completed", done
    embeddings = CreateEmbeddingResponse.model_validate(done["result"])
    assert [item.index for item in embeddings.data] == [0, 1]
    assert all(item.embedding for item in embeddings.data)
    [call] = upstream.calls(prompt=inputs[0])
    assert call.path == "/v1/embeddings"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (RESPONSES, {"model": "anthropic/ok", "input": "x"}),
        (EMBEDDINGS, {"model": "anthropic/ok", "input": "x"}),
    ],
    ids=["responses", "embeddings"],
)
def test_a_provider_that_cannot_serve_the_type_is_refused_at_submit(
    api: GatewayClient, make_key: Callable[..., str], path: str, body: dict[str, Any]
) -> None:
    response = api.submit(make_key(), body, path=path)

    assert response.status_code == 400, response.text
    error = response.json()
    assert set(error) == ERROR_KEYS
    assert error["error"]["code"] == "unsupported_request_type"
    assert error["error"]["param"] == "model"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (CHAT, chat_body("openai/ok", "x")),
        (RESPONSES, {"model": "openai/ok", "input": "x"}),
        (EMBEDDINGS, {"model": "openai/ok", "input": "x"}),
    ],
    ids=["chat", "responses", "embeddings"],
)
def test_stream_true_is_refused_for_every_type(
    api: GatewayClient, make_key: Callable[..., str], path: str, body: dict[str, Any]
) -> None:
    response = api.submit(make_key(), {**body, "stream": True}, path=path)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "stream"


def test_a_job_is_found_only_under_its_own_type(
    api: GatewayClient, make_key: Callable[..., str]
) -> None:
    key = make_key()
    job_id = api.submit_ok(key, chat_body("openai/ok", unique("typed")), path=CHAT)

    assert api.poll_until_done(key, job_id, path=CHAT).status_code == 200
    for other in ("/v1/async/completions", RESPONSES, EMBEDDINGS):
        assert api.poll(key, job_id, other).status_code == 404, other


def test_a_failed_chat_job_names_its_type_and_a_fallback_serves_the_next(
    api: GatewayClient, make_key: Callable[..., str], upstream: FakeUpstream
) -> None:
    key = make_key()
    failing, rescued = unique("fails"), unique("rescued")

    failed = run(api, key, CHAT, chat_body("openai/bad-400", failing))
    served = run(api, key, CHAT, chat_body("openai/fail-500", rescued, fallbacks=["openai/ok"]))

    assert failed["status"] == "failed" and failed["status_code"] == 400
    assert failed["error"]["extra_fields"]["request_type"] == "chat_completion"
    assert UPSTREAM_OPENAI_KEY not in str(failed["error"])
    assert served["status"] == "completed", served
    [choice] = ChatCompletion.model_validate(served["result"]).choices
    assert choice.message.content == reply_text(rescued)
    assert [call.model for call in upstream.calls(prompt=rescued)][-1] == "ok"
