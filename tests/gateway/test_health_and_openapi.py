from __future__ import annotations

from typing import Any

import pytest
from django.db import DatabaseError

from jobs.request_types import KINDS
from jobs.ttl import TTL_HEADER

pytestmark = pytest.mark.django_db

SUBMIT_PATHS = [f"/v1/{kind.path}" for kind in KINDS]
POLL_PATHS = [f"/v1/{kind.path}/{{job_id}}" for kind in KINDS]
every_submit_path = pytest.mark.parametrize("submit_path", SUBMIT_PATHS)
every_poll_path = pytest.mark.parametrize("poll_path", POLL_PATHS)


@pytest.fixture
def schema(api_client: Any) -> dict[str, Any]:
    response = api_client.get("/openapi.json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/")
    assert "json" in response["Content-Type"]
    document: dict[str, Any] = response.json()
    return document


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow one ``$ref`` inside the document, if there is one."""
    ref = node.get("$ref")
    if ref is None:
        return node
    target: Any = document
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return dict(target)


def test_health_is_200_ok_without_credentials(api_client):
    response = api_client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["database"] == "ok"


def test_health_is_503_when_the_database_is_unreachable(api_client, monkeypatch):
    def broken_cursor(*args: Any, **kwargs: Any) -> Any:
        raise DatabaseError("connection refused")

    monkeypatch.setattr("gateway.health.connection.cursor", broken_cursor)
    response = api_client.get("/health")
    assert response.status_code == 503
    assert response.json()["status"] != "ok"


def test_openapi_is_served_without_credentials(schema):
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"]


def test_openapi_lists_the_submit_and_poll_route_of_every_request_type(schema):
    assert SUBMIT_PATHS == [
        "/v1/async/completions",
        "/v1/async/chat/completions",
        "/v1/async/responses",
        "/v1/async/embeddings",
    ]
    for submit_path, poll_path in zip(SUBMIT_PATHS, POLL_PATHS, strict=True):
        assert set(schema["paths"][submit_path]) == {"post"}, submit_path
        assert set(schema["paths"][poll_path]) == {"get"}, poll_path


def test_openapi_names_each_operation_after_its_request_type(schema):
    operation_ids = {
        schema["paths"][path][method]["operationId"]
        for paths, method in [(SUBMIT_PATHS, "post"), (POLL_PATHS, "get")]
        for path in paths
    }
    assert operation_ids == {
        f"{verb}_async_{kind.name}" for kind in KINDS for verb in ("create", "get")
    }


def test_openapi_declares_http_bearer_security(schema):
    schemes = schema["components"]["securitySchemes"]
    bearer = [
        name for name, s in schemes.items() if (s["type"], s.get("scheme")) == ("http", "bearer")
    ]
    assert bearer, schemes
    operations = [(path, "post") for path in SUBMIT_PATHS] + [(path, "get") for path in POLL_PATHS]
    for path, method in operations:
        names = {
            name
            for requirement in schema["paths"][path][method]["security"]
            for name in requirement
        }
        assert set(bearer) & names, (path, names)


def test_openapi_health_needs_no_security(schema):
    security = schema["paths"]["/health"]["get"].get("security")
    assert security in (None, [], [{}]) or {} in security


def test_openapi_error_component_has_the_error_shape(schema):
    error = schema["components"]["schemas"]["Error"]
    properties = set(error["properties"])
    assert {
        "event_id",
        "type",
        "is_bifrost_error",
        "status_code",
        "error",
        "extra_fields",
    } <= properties
    assert error["properties"]["is_bifrost_error"]["type"] == "boolean"
    detail = resolve(schema, error["properties"]["error"])
    assert {"type", "code", "message", "param", "event_id"} <= set(detail["properties"])


@every_submit_path
def test_openapi_submit_documents_the_result_ttl_header(schema, submit_path):
    parameters = schema["paths"][submit_path]["post"]["parameters"]
    ttl = [p for p in parameters if p["name"] == TTL_HEADER]
    assert len(ttl) == 1
    assert ttl[0]["in"] == "header"
    assert ttl[0]["schema"]["type"] == "integer"


@every_submit_path
def test_openapi_submit_answers_202_with_the_job(schema, submit_path):
    responses = schema["paths"][submit_path]["post"]["responses"]
    assert "202" in responses
    job = resolve(schema, responses["202"]["content"]["application/json"]["schema"])
    assert {"id", "status", "created_at", "result", "error"} <= set(job["properties"])


@every_submit_path
def test_openapi_submit_errors_use_the_error_component(schema, submit_path):
    responses = schema["paths"][submit_path]["post"]["responses"]
    for status in ("400", "401", "403", "413"):
        content = responses[status]["content"]["application/json"]["schema"]
        assert content["$ref"].endswith("/Error"), status


@every_poll_path
def test_openapi_poll_answers_200_202_and_404(schema, poll_path):
    responses = schema["paths"][poll_path]["get"]["responses"]
    assert {"200", "202", "404", "401"} <= set(responses)
    assert responses["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")


@pytest.mark.parametrize(
    ("component", "name"),
    [
        ("CompletionRequestRequest", "stream"),
        ("CompletionRequestRequest", "echo"),
        ("ChatCompletionRequestRequest", "logprobs"),
        ("ChatCompletionRequestRequest", "parallel_tool_calls"),
        ("ResponsesRequestRequest", "store"),
    ],
)
def test_openapi_documents_boolean_parameters_as_booleans(schema, component, name):
    """The submit refuses "true" for a boolean, so the document must not call it a string."""
    member = schema["components"]["schemas"][component]["properties"][name]
    assert {option["type"] for option in member.get("anyOf", [member])} == {"boolean", "null"}


def test_openapi_documents_the_503_health_gives_without_its_database(schema):
    responses = schema["paths"]["/health"]["get"]["responses"]
    assert {"200", "503"} <= set(responses)
    assert responses["503"]["content"]["application/json"]["schema"]["$ref"].endswith("/Health")


@every_submit_path
def test_openapi_submit_example_is_a_request_the_gateway_accepts(
    schema, key_client, dispatched, submit_path
):
    """Fuzzers and readers start from the example, so it must be a valid submit."""
    content = schema["paths"][submit_path]["post"]["requestBody"]["content"]["application/json"]
    [example] = content["examples"].values()
    response = key_client.post(submit_path, example["value"], format="json")
    assert response.status_code == 202, response.content
