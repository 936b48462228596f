"""Each request type is one declaration (jobs/request_types.py): its routes, its schema, its
result type and its adapter per provider protocol, read by the URLs, the submit checks and the
worker's routing alike."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import resolve
from rest_framework.test import APIClient

from jobs.engine import _adapters_for
from jobs.models import AsyncJob, RequestType
from jobs.request_types import BY_TYPE, KINDS, RequestKind
from jobs.schemas.base import RequestBody
from tests.factories import AsyncJobFactory
from tests.helpers import Bells, assert_error_shape

pytestmark = pytest.mark.django_db

KIND_IDS = [kind.name for kind in KINDS]

# The smallest valid body of each type, on the OpenAI-protocol provider of the test settings.
BODIES: dict[str, dict[str, Any]] = {
    "text_completion": {"model": "openai/m", "prompt": "Say hi"},
    "chat_completion": {"model": "openai/m", "messages": [{"role": "user", "content": "Say hi"}]},
    "responses": {"model": "openai/m", "input": "Say hi"},
    "embedding": {"model": "openai/m", "input": "Say hi"},
}


def test_every_request_type_is_declared_once_with_a_schema_and_adapters() -> None:
    assert {kind.request_type for kind in KINDS} == set(RequestType)
    assert len({kind.path for kind in KINDS}) == len({kind.name for kind in KINDS}) == len(KINDS)
    for kind in KINDS:
        assert issubclass(kind.schema, RequestBody)
        assert "openai" in kind.adapters, "every type is served by OpenAI-compatible providers"
        assert BY_TYPE[kind.request_type.value] is kind


def test_anthropic_serves_completions_and_chat_only() -> None:
    served = {kind.request_type for kind in KINDS if "anthropic" in kind.adapters}
    assert served == {RequestType.TEXT_COMPLETION, RequestType.CHAT_COMPLETION}


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_each_type_has_a_submit_and_a_poll_route_served_with_its_declaration(
    kind: RequestKind,
) -> None:
    submit = resolve(f"/v1/{kind.path}")
    poll = resolve(f"/v1/{kind.path}/some-id")
    assert submit.url_name == f"submit-{kind.name}"
    assert poll.url_name == f"poll-{kind.name}"
    assert submit.func.view_initkwargs == {"kind": kind}  # type: ignore[attr-defined]
    assert poll.func.view_initkwargs == {"kind": kind}  # type: ignore[attr-defined]
    assert poll.kwargs == {"job_id": "some-id"}


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_a_submit_of_each_type_is_a_job_of_that_type_polled_at_its_own_route(
    key_client: APIClient, dispatched: Bells, kind: RequestKind
) -> None:
    body = BODIES[kind.request_type]
    response = key_client.post(f"/v1/{kind.path}", body, format="json")
    assert response.status_code == 202, response.content
    job = AsyncJob.objects.get(pk=response.json()["id"])
    assert job.request_type == kind.request_type
    assert (job.provider, job.model) == ("openai", "m")
    assert job.request == {k: v for k, v in body.items() if k != "model"}
    assert response["Location"] == f"http://testserver/v1/{kind.path}/{job.id}"
    assert key_client.get(response["Location"]).status_code == 202


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_a_job_polled_at_another_types_route_is_404_naming_that_route_type(
    key: Any, key_client: APIClient, kind: RequestKind
) -> None:
    others = [other for other in KINDS if other is not kind]
    for other in others:
        job: Any = AsyncJobFactory(virtual_key=key, request_type=other.request_type)
        response = key_client.get(f"/v1/{kind.path}/{job.id}")
        body = assert_error_shape(response, 404, code="job_not_found")
        assert body["extra_fields"]["request_type"] == kind.request_type


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_streaming_is_refused_for_every_type(key_client: APIClient, kind: RequestKind) -> None:
    body = {**BODIES[kind.request_type], "stream": True}
    response = key_client.post(f"/v1/{kind.path}", body, format="json")
    error = assert_error_shape(response, 400, code="streaming_not_supported", param="stream")
    assert error["extra_fields"]["request_type"] == kind.request_type
    assert AsyncJob.objects.count() == 0


@pytest.mark.parametrize("path", ["async/responses", "async/embeddings"])
def test_a_provider_whose_protocol_cannot_serve_the_type_is_400_at_submit(
    key_client: APIClient, path: str
) -> None:
    kind = next(kind for kind in KINDS if kind.path == path)
    body = {**BODIES[kind.request_type], "model": "anthropic/claude"}
    response = key_client.post(f"/v1/{path}", body, format="json")
    error = assert_error_shape(response, 400, code="unsupported_request_type", param="model")
    assert kind.title in error["error"]["message"]
    assert AsyncJob.objects.count() == 0


def test_a_fallback_that_cannot_serve_the_type_is_400_naming_fallbacks(
    key_client: APIClient,
) -> None:
    body = {**BODIES["embedding"], "fallbacks": ["anthropic/claude"]}
    response = key_client.post("/v1/async/embeddings", body, format="json")
    assert_error_shape(response, 400, code="unsupported_request_type", param="fallbacks[0]")
    assert AsyncJob.objects.count() == 0


def test_a_parameter_the_providers_protocol_cannot_carry_is_400_at_submit(
    key_client: APIClient,
) -> None:
    body = {**BODIES["chat_completion"], "model": "anthropic/claude", "logprobs": True}
    response = key_client.post("/v1/async/chat/completions", body, format="json")
    error = assert_error_shape(response, 400, param="logprobs")
    assert error["error"]["code"] == "unsupported_parameter"
    assert AsyncJob.objects.count() == 0


def test_the_same_parameter_is_accepted_where_the_protocol_carries_it(
    key_client: APIClient, dispatched: Bells
) -> None:
    body = {**BODIES["chat_completion"], "logprobs": True, "top_logprobs": 2}
    response = key_client.post("/v1/async/chat/completions", body, format="json")
    assert response.status_code == 202, response.content
    assert AsyncJob.objects.get().request["top_logprobs"] == 2


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_the_worker_routes_a_job_with_its_types_adapters(key: Any, kind: RequestKind) -> None:
    job: Any = AsyncJobFactory(virtual_key=key, request_type=kind.request_type)
    assert _adapters_for(job) is kind.adapters


def test_a_job_of_a_type_this_gateway_does_not_know_has_no_adapter(key: Any) -> None:
    job: Any = AsyncJobFactory(virtual_key=key, request_type="image_generation")
    assert _adapters_for(job) == {}
