"""The job API's one request path (jobs/endpoint.py): every request to every request type's
routes is answered by it, in DRF's order (negotiation, authentication, method, body), and never
through DRF's own request cycle."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from rest_framework.test import APIClient
from rest_framework.views import APIView

from jobs.models import AsyncJob, JobStatus
from jobs.request_types import KINDS, RequestKind
from tests.factories import AsyncJobFactory
from tests.helpers import assert_error_shape, assert_unauthorized

pytestmark = pytest.mark.django_db

KIND_IDS = [kind.name for kind in KINDS]


@pytest.fixture(autouse=True)
def drf_cycle_never_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """DRF's request cycle (``APIView.initial``) is not the job views' path."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the job views answer without DRF's request cycle")

    monkeypatch.setattr(APIView, "initial", refuse)


def submit_url(kind: RequestKind) -> str:
    return f"/v1/{kind.path}"


def poll_url(kind: RequestKind, job_id: uuid.UUID | str) -> str:
    return f"/v1/{kind.path}/{job_id}"


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_no_credentials_is_401_on_every_route_before_the_method_or_the_body(
    api_client: APIClient, kind: RequestKind
) -> None:
    for response in (
        api_client.post(submit_url(kind), "not json", content_type="text/plain"),
        api_client.get(poll_url(kind, uuid.uuid4())),
        api_client.delete(poll_url(kind, uuid.uuid4())),
        api_client.options(submit_url(kind)),
    ):
        body = assert_unauthorized(response)
        assert body["extra_fields"]["request_type"] == kind.request_type


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_an_accept_header_that_allows_no_json_is_406(
    key_client: APIClient, kind: RequestKind
) -> None:
    for accept in ("text/html", "application/json;q=0, text/html"):
        response = key_client.get(poll_url(kind, uuid.uuid4()), HTTP_ACCEPT=accept)
        assert_error_shape(response, 406, code="not_acceptable")


@pytest.mark.parametrize(
    "accept", ["", "*/*", "application/json", "application/*", "text/html, application/json;q=0.5"]
)
def test_any_accept_header_that_allows_json_is_answered_in_json(
    key_client: APIClient, accept: str
) -> None:
    response = key_client.get(poll_url(KINDS[0], uuid.uuid4()), HTTP_ACCEPT=accept)
    assert_error_shape(response, 404, code="job_not_found")


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_a_method_a_route_does_not_take_is_405_with_allow(
    key_client: APIClient, kind: RequestKind
) -> None:
    response = key_client.delete(submit_url(kind))
    assert_error_shape(response, 405, code="method_not_allowed")
    assert response["Allow"] == "POST, OPTIONS"
    response = key_client.post(poll_url(kind, uuid.uuid4()), {}, format="json")
    assert_error_shape(response, 405, code="method_not_allowed")
    assert response["Allow"] == "GET, HEAD, OPTIONS"


@pytest.mark.parametrize("content_type", ["text/plain", "application/jsonx", "multipart/form-data"])
def test_a_body_that_is_not_json_is_415(key_client: APIClient, content_type: str) -> None:
    response = key_client.generic("POST", submit_url(KINDS[1]), b"{}", content_type=content_type)
    assert_error_shape(response, 415, code="unsupported_media_type")
    assert AsyncJob.objects.count() == 0


def test_a_json_content_type_with_parameters_is_read(key_client: APIClient) -> None:
    response = key_client.generic(
        "POST", submit_url(KINDS[0]), b"[]", content_type="application/JSON; charset=utf-8"
    )
    assert_error_shape(response, 400, code="invalid_body")


def test_an_empty_body_is_400(key_client: APIClient) -> None:
    response = key_client.generic(
        "POST", submit_url(KINDS[0]), b"", content_type="application/json"
    )
    assert_error_shape(response, 400, code="invalid_json")


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_options_describes_the_route_to_an_authenticated_caller(
    key_client: APIClient, kind: RequestKind
) -> None:
    response = key_client.options(submit_url(kind))
    assert response.status_code == 200
    assert response["Allow"] == "POST, OPTIONS"
    body = response.json()
    assert body["renders"] == body["parses"] == ["application/json"]
    assert body["name"]


def test_head_on_a_poll_answers_as_get_does(key: Any, key_client: APIClient) -> None:
    job: Any = AsyncJobFactory(virtual_key=key, status=JobStatus.COMPLETED, status_code=200)
    assert key_client.head(poll_url(KINDS[0], job.id)).status_code == 200
    pending: Any = AsyncJobFactory(virtual_key=key)
    assert key_client.head(poll_url(KINDS[0], pending.id)).status_code == 202


def test_a_query_string_changes_nothing(key: Any, key_client: APIClient) -> None:
    job: Any = AsyncJobFactory(virtual_key=key, status=JobStatus.COMPLETED, status_code=200)
    plain = key_client.get(poll_url(KINDS[0], job.id))
    with_format = key_client.get(poll_url(KINDS[0], job.id) + "?format=html")
    assert (plain.status_code, plain.json()) == (with_format.status_code, with_format.json())


def test_the_answer_escapes_line_separators_for_javascript(key: Any, key_client: APIClient):
    job: Any = AsyncJobFactory(
        virtual_key=key,
        status=JobStatus.COMPLETED,
        status_code=200,
        result={"object": "text_completion", "choices": [{"text": "\u2028hi"}]},
    )
    response = key_client.get(poll_url(KINDS[0], job.id))
    assert b"\\u2028hi" in response.content
    assert response.json()["result"]["choices"][0]["text"] == "\u2028hi"


def test_a_database_error_is_503(key_client: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import OperationalError

    def down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr("jobs.views.get_visible_job", down)
    response = key_client.get(poll_url(KINDS[0], uuid.uuid4()))
    assert_error_shape(response, 503, code="service_unavailable")


def test_a_bug_surfaces_as_a_500_in_the_error_shape(
    key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("jobs.views.get_visible_job", broken)
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.raw}")
    response = client.get(poll_url(KINDS[0], uuid.uuid4()))
    assert response.status_code == 500
    assert json.loads(response.content)["error"]["code"] == "internal_error"
