from __future__ import annotations

import io
import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from gateway.http.parsers import MAX_NESTING, TOO_DEEP, read_json_body
from jobs.models import AsyncJob
from tests.helpers import SUBMIT_URL, VALID_BODY, Bells, assert_error_shape

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _nothing_is_stored(db: None, dispatched: Bells) -> Any:
    """Every request in this module is refused: no row is written and nothing is published."""
    yield
    assert AsyncJob.objects.count() == 0
    assert dispatched.rung == 0


def post_raw(client: Any, body: str | bytes, content_type: str = "application/json") -> Any:
    return client.post(SUBMIT_URL, data=body, content_type=content_type)


def test_invalid_json_is_400_invalid_json(key_client):
    body = assert_error_shape(
        post_raw(key_client, '{"model": "openai/gpt-test",'), 400, code="invalid_json"
    )
    assert body["type"] == "invalid_request_error"


def test_body_that_is_a_json_list_is_400(key_client):
    response = post_raw(key_client, json.dumps([VALID_BODY]))
    assert_error_shape(response, 400, code="invalid_body")


@pytest.mark.parametrize("scalar", ["42", '"text"', "true"])
def test_body_that_is_a_json_scalar_is_400(key_client, scalar):
    assert_error_shape(post_raw(key_client, scalar), 400, code="invalid_body")


def test_body_that_is_json_null_is_400(key_client):
    assert_error_shape(post_raw(key_client, "null"), 400)


def test_empty_body_is_400(key_client):
    assert_error_shape(post_raw(key_client, ""), 400)


def test_empty_json_object_is_400_naming_model(key_client):
    assert_error_shape(post_raw(key_client, "{}"), 400, param="model")


def test_body_above_the_limit_is_413(settings, key_client):
    settings.GATEWAY_MAX_BODY_BYTES = 1024
    oversized = json.dumps(VALID_BODY | {"prompt": "x" * 2000})
    body = assert_error_shape(post_raw(key_client, oversized), 413, code="payload_too_large")
    assert "1024" in body["error"]["message"]


def test_body_just_under_the_limit_is_parsed(settings, key_client):
    settings.GATEWAY_MAX_BODY_BYTES = 1024
    body = json.dumps({"prompt": "x" * 900})
    assert len(body) < 1024
    assert_error_shape(post_raw(key_client, body), 400, param="model")


def test_body_far_above_the_unchanged_limit_is_413(key_client, settings):
    oversized = json.dumps(VALID_BODY | {"prompt": "x" * (settings.GATEWAY_MAX_BODY_BYTES + 10)})
    assert_error_shape(post_raw(key_client, oversized), 413, code="payload_too_large")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_number_literal_is_400(key_client, literal):
    raw = f'{{"model": "openai/gpt-test", "prompt": "hi", "temperature": {literal}}}'
    assert_error_shape(post_raw(key_client, raw), 400, code="invalid_json")


def test_nul_character_in_prompt_is_400_naming_prompt(key_client):
    raw = '{"model": "openai/gpt-test", "prompt": "a\\u0000b"}'
    assert_error_shape(post_raw(key_client, raw), 400, code="invalid_characters", param="prompt")


def test_nul_character_in_a_prompt_array_names_its_index(key_client):
    raw = '{"model": "openai/gpt-test", "prompt": ["fine", "a\\u0000b"]}'
    assert_error_shape(post_raw(key_client, raw), 400, code="invalid_characters", param="prompt[1]")


def test_lone_surrogate_in_prompt_is_400_naming_prompt(key_client):
    raw = '{"model": "openai/gpt-test", "prompt": "\\ud800"}'
    assert_error_shape(post_raw(key_client, raw), 400, code="invalid_characters", param="prompt")


def test_nul_character_in_a_field_name_is_400(key_client):
    raw = '{"model": "openai/gpt-test", "prompt": "hi", "x\\u0000": 1}'
    assert_error_shape(post_raw(key_client, raw), 400, code="invalid_characters")


def test_body_that_is_not_utf8_is_400(key_client):
    raw = b'{"model": "openai/gpt-test", "prompt": "\xff\xfe"}'
    assert_error_shape(post_raw(key_client, raw), 400, code="invalid_json")


def test_deeply_nested_json_is_400(key_client):
    raw = '{"model": "openai/gpt-test", "prompt": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert_error_shape(post_raw(key_client, raw), 400)


def _nested(depth: int) -> str:
    """A body whose ``stop`` holds ``depth`` nested arrays (the body itself is one level)."""
    return '{"model": "openai/gpt-test", "prompt": "hi", "stop": ' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize("depth", [MAX_NESTING, 100, 990, 5000, 100_000])
def test_nesting_past_the_limit_is_one_clear_400_however_deep(key_client, depth):
    body = assert_error_shape(post_raw(key_client, _nested(depth)), 400, code="invalid_json")
    assert body["error"]["message"] == TOO_DEEP


def test_nesting_up_to_the_limit_is_parsed_and_left_to_the_parameters(key_client):
    response = post_raw(key_client, _nested(MAX_NESTING - 1))
    body = assert_error_shape(response, 400, code="invalid_parameter")
    assert body["error"]["param"] == "stop[0]", body["error"]


@pytest.mark.parametrize(
    ("literal", "read_as"),
    [
        ("9" * 310, int("9" * 310)),
        ("-" + "9" * 309, -int("9" * 309)),
        ("1" + "0" * 310, float("inf")),
        ("-1" + "0" * 4999, float("-inf")),
        ("1e999", float("inf")),
    ],
    ids=["310-digits", "negative-309-digits", "311-digits", "negative-5000-digits", "1e999"],
)
def test_numbers_past_the_float_range_read_as_infinities(literal, read_as):
    assert read_json_body(io.BytesIO(f"[{literal}]".encode()), None) == [read_as]


@pytest.mark.parametrize("length", ["9" * 5000, "1" * 40, "0" * 5000 + "1"])
def test_a_content_length_of_thousands_of_digits_is_a_4xx(key, length):
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.raw}")
    response = client.generic(
        "POST", SUBMIT_URL, json.dumps(VALID_BODY), "application/json", CONTENT_LENGTH=length
    )
    assert 400 <= response.status_code < 500
    assert_error_shape(response, response.status_code)


def test_text_plain_content_type_is_415(key_client):
    response = post_raw(key_client, json.dumps(VALID_BODY), content_type="text/plain")
    assert_error_shape(response, 415, code="unsupported_media_type")


def test_form_content_type_is_415(key_client):
    response = key_client.post(SUBMIT_URL, data={"model": "openai/gpt-test", "prompt": "hi"})
    assert_error_shape(response, 415, code="unsupported_media_type")


def test_unknown_path_is_404_json_in_the_error_shape(key_client):
    response = key_client.get("/v1/nope")
    body = assert_error_shape(response, 404, code="not_found")
    assert b"<html" not in response.content.lower()
    assert body["type"] == "not_found_error"


def test_unknown_path_without_credentials_is_404_json(api_client):
    response = api_client.post("/v1/nope", data="{}", content_type="application/json")
    assert_error_shape(response, 404)


def test_put_on_the_submit_url_is_405(key_client):
    response = key_client.put(
        SUBMIT_URL, data=json.dumps(VALID_BODY), content_type="application/json"
    )
    assert_error_shape(response, 405, code="method_not_allowed")


def test_delete_on_the_poll_url_is_405(key_client):
    response = key_client.delete("/v1/async/completions/00000000-0000-0000-0000-000000000000")
    assert_error_shape(response, 405, code="method_not_allowed")


@pytest.mark.parametrize(
    "raw",
    [
        '{"model": 1, "prompt": "hi"}',
        '{"model": "openai/gpt-test", "prompt": []}',
        '{"model": "openai/gpt-test", "prompt": "hi", "max_tokens": 1e400}',
        '{"model": "openai/gpt-test", "prompt": "hi", "seed": 1' + "0" * 40 + "}",
        '{"model": "openai/gpt-test", "prompt": "hi", "logit_bias": {"\\ud800": 1}}',
        '{"model": "openai/gpt-test", "prompt": "hi", "stop": [null]}',
        '{"model": "nope", "prompt": "hi"}',
        '{"model": "openai/gpt-test", "prompt": "hi", "fallbacks": "x"}',
        '{"model": "openai/gpt-test", "prompt": "hi", "stream": true}',
        '{"model": "openai/gpt-test", "prompt": "hi", "unknown": 1}',
    ],
)
def test_malformed_parameters_are_400_never_500(key_client, raw):
    assert_error_shape(post_raw(key_client, raw), 400)
