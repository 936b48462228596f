from __future__ import annotations

import asyncio
import base64
import json
import struct
from typing import Any

import pytest
from openai.types import CreateEmbeddingResponse

from harness.upstream import UPSTREAM_OPENAI_KEY, embedding_of
from providers.base import Credentials, ProviderError, Target
from providers.openai_embeddings import OpenAIEmbeddings
from providers.routing import RetryPolicy, route_request
from providers.transport import HttpResponse, TransportError
from tests.providers.fakes import (
    OPENAI,
    OPENAI_KEY,
    TIMEOUTS,
    FakeTransport,
    json_response,
    openai_error,
    raw_response,
    serve_from_fake_upstream,
)

MODEL = "text-embedding-3-small"


def openai_embeddings(*vectors: Any, **overrides: Any) -> dict[str, Any]:
    """An embeddings reply exactly as api.openai.com returns it."""
    reply: dict[str, Any] = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": vector}
            for i, vector in enumerate(vectors or ([0.0023, -0.0091, 0.0152],))
        ],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }
    reply.update(overrides)
    return reply


def serve(
    transport: FakeTransport,
    params: dict[str, Any] | None = None,
    *,
    credentials: Credentials = OPENAI,
    model: str = MODEL,
) -> dict[str, Any]:
    params = {"input": "Say hi"} if params is None else params
    return asyncio.run(OpenAIEmbeddings().serve(transport, credentials, model, params, TIMEOUTS))


def served(reply: dict[str, Any], model: str = MODEL) -> tuple[CreateEmbeddingResponse, Any]:
    result = serve(FakeTransport(json_response(200, reply)), model=model)
    return CreateEmbeddingResponse.model_validate(result), result


def failure(reply: HttpResponse | TransportError) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        serve(FakeTransport(reply))
    return caught.value


# --- the request --------------------------------------------------------------------------------


def test_posts_params_and_model_to_the_embeddings_url() -> None:
    transport = FakeTransport(json_response(200, openai_embeddings([0.1], [0.2])))

    serve(transport, {"input": ["a", "b"], "dimensions": 256, "encoding_format": "float"})

    [request] = transport.requests
    assert request.url == "https://api.openai.com/v1/embeddings"
    assert request.headers == {
        "Authorization": f"Bearer {OPENAI_KEY}",
        "Content-Type": "application/json",
    }
    assert request.json() == {
        "input": ["a", "b"],
        "dimensions": 256,
        "encoding_format": "float",
        "model": MODEL,
    }
    assert request.timeouts == TIMEOUTS


def test_keyless_server_behind_a_trailing_slash_gets_no_authorization() -> None:
    transport = FakeTransport(json_response(200, openai_embeddings()))

    serve(transport, credentials=Credentials("ollama", "openai", "http://127.0.0.1/v1/", ""))

    assert transport.requests[0].url == "http://127.0.0.1/v1/embeddings"
    assert "Authorization" not in transport.requests[0].headers


def test_gateway_fields_and_nulls_are_dropped() -> None:
    transport = FakeTransport(json_response(200, openai_embeddings()))
    params = {
        "model": "openai/text-embedding-3-small",
        "fallbacks": ["vllm/bge-m3"],
        "input": [[1, 2, 3]],
        "dimensions": None,
        "user": None,
    }

    serve(transport, params)

    assert transport.requests[0].json() == {"input": [[1, 2, 3]], "model": MODEL}


def test_nothing_an_embeddings_request_says_is_refused() -> None:
    assert OpenAIEmbeddings().refusal({"input": [[1, 2]], "encoding_format": "base64"}) is None


# --- a successful reply -------------------------------------------------------------------------


def test_openai_reply_is_kept_as_the_sdk_embedding_list() -> None:
    embeddings, _ = served(openai_embeddings([0.5, -0.25], [1, 0]))

    assert (embeddings.object, embeddings.model) == ("list", "text-embedding-3-small")
    assert [(e.object, e.index) for e in embeddings.data] == [("embedding", 0), ("embedding", 1)]
    assert [e.embedding for e in embeddings.data] == [[0.5, -0.25], [1.0, 0.0]]
    assert (embeddings.usage.prompt_tokens, embeddings.usage.total_tokens) == (8, 8)


def test_sparse_compatible_server_reply_is_completed() -> None:
    sparse = {"data": [{"embedding": [0.1, 0.2]}, {"embedding": [0.3, 0.4]}]}

    embeddings, _ = served(sparse, model="nomic-embed-text")

    assert (embeddings.object, embeddings.model) == ("list", "nomic-embed-text")
    assert [e.index for e in embeddings.data] == [0, 1]
    assert [e.object for e in embeddings.data] == ["embedding", "embedding"]
    assert (embeddings.usage.prompt_tokens, embeddings.usage.total_tokens) == (0, 0)


def test_missing_total_tokens_is_the_prompts() -> None:
    embeddings, _ = served(openai_embeddings(usage={"prompt_tokens": 5}))

    assert (embeddings.usage.prompt_tokens, embeddings.usage.total_tokens) == (5, 5)


def test_a_base64_vector_is_kept_as_the_provider_sent_it() -> None:
    encoded = base64.b64encode(struct.pack("<3f", 0.5, -0.25, 1.0)).decode()

    result = serve(FakeTransport(json_response(200, openai_embeddings(encoded))))

    # The SDK's type says list[float]: its client decodes base64 itself before building it, so
    # the result carries the text the caller asked for.
    assert result["data"] == [{"object": "embedding", "index": 0, "embedding": encoded}]
    decoded = struct.unpack("<3f", base64.b64decode(result["data"][0]["embedding"]))
    assert decoded == (0.5, -0.25, 1.0)


@pytest.mark.parametrize(
    "reply",
    [
        {"object": "list"},
        {"data": "nope"},
        {"data": [[0.1, 0.2]]},
        {"data": [{"embedding": None}]},
        {"data": [{"embedding": [0.1, "x"]}]},
        {"data": [{"embedding": [True, False]}]},
    ],
)
def test_reply_without_usable_vectors_is_an_invalid_reply(reply: dict[str, Any]) -> None:
    assert failure(json_response(200, reply)).code == "invalid_upstream_response"


def test_non_json_200_is_an_invalid_reply() -> None:
    error = failure(raw_response(200, b"<html>Welcome to nginx</html>", "text/html"))
    assert (error.status_code, error.code, error.transient) == (
        502,
        "invalid_upstream_response",
        False,
    )


def test_an_api_key_echoed_in_a_reply_never_reaches_the_result() -> None:
    reply = openai_embeddings(model=f"embed-{OPENAI_KEY}")

    outcome = asyncio.run(
        route_request(
            [Target("openai", MODEL)],
            {"input": "Say hi"},
            transport=FakeTransport(json_response(200, reply)),
            credentials={"openai": OPENAI},
            adapters={"openai": OpenAIEmbeddings()},
            policy=RetryPolicy(retries=0),
            timeouts=TIMEOUTS,
        )
    )

    assert outcome.result is not None
    assert OPENAI_KEY not in json.dumps(outcome.result)
    assert CreateEmbeddingResponse.model_validate(outcome.result).model == "embed-[redacted]"


# --- error replies ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limits_and_server_errors_are_transient(status: int) -> None:
    error = failure(openai_error(status, "try later", error_type="server_error"))
    assert (error.status_code, error.transient, error.is_gateway_error) == (status, True, False)


def test_a_bad_request_is_permanent_and_names_the_param() -> None:
    error = failure(openai_error(400, "Input too long", code="context_length", param="input"))
    assert (error.status_code, error.code, error.param, error.transient) == (
        400,
        "context_length",
        "input",
        False,
    )


def test_api_key_never_appears_in_the_error() -> None:
    error = failure(openai_error(401, f"Incorrect API key provided: {OPENAI_KEY}."))
    assert OPENAI_KEY not in error.message and OPENAI_KEY not in str(error)


def test_transport_failure_becomes_a_transient_provider_error() -> None:
    error = failure(TransportError("protocol", "cut"))
    assert (error.code, error.transient) == ("upstream_protocol_error", True)


# --- against the harness's fake upstream --------------------------------------------------------


def test_the_fake_upstreams_answer_parses_as_the_sdk_embedding_list() -> None:
    params = {"input": ["first text", "second text"], "encoding_format": "float"}

    result, calls = serve_from_fake_upstream(OpenAIEmbeddings(), "embed-fake", params)

    embeddings = CreateEmbeddingResponse.model_validate(result)
    assert [e.embedding for e in embeddings.data] == [
        embedding_of("first text"),
        embedding_of("second text"),
    ]
    assert embeddings.model == "embed-fake"
    [call] = calls
    assert (call.path, call.prompts) == ("/v1/embeddings", ("first text", "second text"))
    assert UPSTREAM_OPENAI_KEY not in json.dumps(result)
