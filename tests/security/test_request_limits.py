"""Request body size (413), prompt count and prompt size (400): at the limit is accepted, one over
is refused in the error shape with nothing stored, whatever the client claims.

tests/gateway/test_errors_and_parsing.py covers a body over and just under the limit;
tests/jobs/test_submit_api.py one case each of too many and too long prompts.
"""

from __future__ import annotations

import json

import pytest

from jobs.models import AsyncJob
from tests.helpers import SUBMIT_URL, assert_error_shape, assert_unauthorized

pytestmark = pytest.mark.django_db


def post_raw(client, raw: bytes | str, **extra: str):
    return client.generic("POST", SUBMIT_URL, raw, content_type="application/json", **extra)


def submit(client, body: dict) -> object:
    return post_raw(client, json.dumps(body))


def test_a_declared_length_over_the_limit_is_413_before_the_body_is_read(settings, key_client):
    settings.GATEWAY_MAX_BODY_BYTES = 1024
    response = post_raw(key_client, b"{}", CONTENT_LENGTH="999999999")
    assert_error_shape(response, 413, code="payload_too_large")


def test_a_declared_length_shorter_than_the_body_is_a_400_not_a_500(key_client):
    response = post_raw(key_client, b'{"model": "openai/m", "prompt": "x"}', CONTENT_LENGTH="10")
    assert_error_shape(response, 400)
    assert AsyncJob.objects.count() == 0


def test_a_body_of_exactly_the_limit_is_read_and_one_byte_more_is_413(
    settings, key_client, dispatched
):
    settings.GATEWAY_MAX_BODY_BYTES = 1024
    head = '{"model": "openai/m", "prompt": "'
    exact = head + "x" * (1024 - len(head) - 2) + '"}'
    assert len(exact) == 1024
    assert post_raw(key_client, exact).status_code == 202
    AsyncJob.objects.all().delete()
    over = head + "x" * (1024 - len(head) - 1) + '"}'
    assert_error_shape(post_raw(key_client, over), 413, code="payload_too_large")
    assert AsyncJob.objects.count() == 0


def test_an_oversized_body_from_an_anonymous_caller_is_401(settings, api_client):
    settings.GATEWAY_MAX_BODY_BYTES = 1024
    assert_unauthorized(post_raw(api_client, "x" * 4096))


def test_exactly_the_maximum_number_of_prompts_is_accepted_and_one_more_is_400(
    settings, key_client, dispatched
):
    settings.GATEWAY_MAX_PROMPTS = 5
    assert submit(key_client, {"model": "openai/m", "prompt": ["p"] * 5}).status_code == 202
    AsyncJob.objects.all().delete()
    body = assert_error_shape(
        submit(key_client, {"model": "openai/m", "prompt": ["p"] * 6}), 400, param="prompt"
    )
    assert "5" in body["error"]["message"]
    assert AsyncJob.objects.count() == 0


@pytest.mark.parametrize("char", ["x", "é", "中", "😀"], ids=["ascii", "latin", "cjk", "emoji"])
def test_prompt_size_counts_characters_not_bytes(settings, key_client, dispatched, char):
    settings.GATEWAY_MAX_PROMPT_CHARS = 50
    assert submit(key_client, {"model": "openai/m", "prompt": char * 50}).status_code == 202
    AsyncJob.objects.all().delete()
    response = submit(key_client, {"model": "openai/m", "prompt": char * 51})
    assert_error_shape(response, 400, param="prompt")
    assert AsyncJob.objects.count() == 0


def test_every_prompt_of_an_array_is_held_to_the_size_limit(settings, key_client):
    settings.GATEWAY_MAX_PROMPT_CHARS = 50
    prompts = ["short", "x" * 50, "y" * 51]
    assert_error_shape(submit(key_client, {"model": "openai/m", "prompt": prompts}), 400)
    assert AsyncJob.objects.count() == 0


def test_the_default_limits_refuse_what_the_settings_promise(settings, key_client):
    too_many = ["p"] * (settings.GATEWAY_MAX_PROMPTS + 1)
    assert_error_shape(submit(key_client, {"model": "openai/m", "prompt": too_many}), 400)
    too_long = "x" * (settings.GATEWAY_MAX_PROMPT_CHARS + 1)
    assert_error_shape(submit(key_client, {"model": "openai/m", "prompt": too_long}), 400)
    assert AsyncJob.objects.count() == 0
