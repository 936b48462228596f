"""The API answers in JSON whatever plain Accept header comes; other media types are still 406."""

from __future__ import annotations

import json

import pytest

from tests.helpers import assert_error_shape, unknown_job_url

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "accept", [None, "*/*", "application/json", "application/*", " application/json "]
)
def test_plain_accept_headers_get_json(key_client, accept):
    headers = {} if accept is None else {"Accept": accept}
    response = key_client.get(unknown_job_url(), headers=headers)
    assert_error_shape(response, 404, code="job_not_found")
    assert response["Content-Type"] == "application/json"


def test_accept_for_another_media_type_is_406_in_the_error_shape(key_client):
    response = key_client.get(unknown_job_url(), headers={"Accept": "text/html"})
    assert_error_shape(response, 406, code="not_acceptable")


def test_accept_listing_json_among_others_gets_json(key_client):
    response = key_client.get(unknown_job_url(), headers={"Accept": "text/html, application/json"})
    assert_error_shape(response, 404, code="job_not_found")


def test_json_indent_parameter_is_still_honoured(key_client):
    response = key_client.get(unknown_job_url(), headers={"Accept": "application/json; indent=2"})
    assert response.status_code == 404
    assert response.content.startswith(b'{\n  "')
    assert json.loads(response.content)["error"]["code"] == "job_not_found"


def test_format_query_parameter_changes_nothing(key_client):
    # More cases: tests/security/test_responses_are_documented.py
    for query in ("?format=json", "?format=xml"):
        response = key_client.get(unknown_job_url() + query)
        assert_error_shape(response, 404, code="job_not_found")


def test_submit_answers_json_to_a_client_that_sends_no_accept(key_client, dispatched):
    body = {"model": "openai/gpt-test", "prompt": "hi"}
    response = key_client.post("/v1/async/completions", body, format="json")
    assert response.status_code == 202
    assert response["Content-Type"] == "application/json"
    assert response.json()["status"] == "pending"


def test_plain_accept_headers_skip_ranking_media_types(key_client, monkeypatch):
    def rank(*args, **kwargs):
        raise AssertionError("a plain Accept header needs no negotiation")

    monkeypatch.setattr(
        "rest_framework.negotiation.DefaultContentNegotiation.select_renderer", rank
    )
    response = key_client.get(unknown_job_url(), headers={"Accept": "*/*"})
    assert_error_shape(response, 404, code="job_not_found")
