"""What the API answers to requests a client shapes oddly (Accept, Content-Type, ?format=) is a
status the served document lists for that operation; fuzzers only send what the document names,
so these are checked by hand."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers import SUBMIT_URL, VALID_BODY

pytestmark = pytest.mark.django_db

SUBMIT = (SUBMIT_URL, "post")
POLL = ("/v1/async/completions/{job_id}", "get")
HEALTH = ("/health", "get")


@pytest.fixture
def document(api_client):
    return api_client.get("/openapi.json").json()


def call(client, operation, **extra):
    path, method = operation
    if method == "post":
        return client.post(path, VALID_BODY, format="json", **extra)
    return client.get(path.replace("{job_id}", str(uuid.uuid4())), **extra)


@pytest.mark.parametrize(
    ("operation", "extra", "status"),
    [
        pytest.param(SUBMIT, {"QUERY_STRING": "format=xml"}, 202, id="submit-format-xml"),
        pytest.param(POLL, {"QUERY_STRING": "format=xml"}, 404, id="poll-format-xml"),
        pytest.param(HEALTH, {"QUERY_STRING": "format=api"}, 200, id="health-format-api"),
    ],
)
def test_a_format_query_parameter_is_ignored(key_client, dispatched, operation, extra, status):
    response = call(key_client, operation, **extra)
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("operation", "extra", "status"),
    [
        pytest.param(SUBMIT, {"HTTP_ACCEPT": "text/html"}, 406, id="submit-accept-html"),
        pytest.param(POLL, {"HTTP_ACCEPT": "application/xml"}, 406, id="poll-accept-xml"),
        pytest.param(HEALTH, {"HTTP_ACCEPT": "text/html"}, 406, id="health-accept-html"),
        pytest.param(SUBMIT, {"content_type": "text/plain"}, 415, id="submit-text-plain"),
    ],
)
def test_a_refusal_of_the_request_form_is_a_documented_status(
    key_client, document, operation, extra, status
):
    path, method = operation
    if "content_type" in extra:
        response = key_client.post(path, "model=openai/m", **extra)
    else:
        response = call(key_client, operation, **extra)
    assert response.status_code == status
    assert str(status) in document["paths"][path][method]["responses"]
    assert response["Content-Type"] == "application/json"
