"""NUL bytes and odd Unicode anywhere in a request: a clean 400 naming the place (or a 401/404
where the credential or the job id holds them), or accepted and kept exactly; never a 500.

tests/gateway/test_errors_and_parsing.py covers NUL in a prompt, a prompt array and a field
name, a lone surrogate, a body that is not UTF-8; tests/jobs/test_submit_api.py a few hostile
JSON numbers. These cover every other parameter, the header credentials and the job id.
"""

from __future__ import annotations

import json
import logging

import pytest

from jobs.models import AsyncJob
from tests.helpers import SUBMIT_URL, assert_error_shape, assert_unauthorized, bearer

pytestmark = pytest.mark.django_db

BASE = {"model": "openai/m", "prompt": "x"}


def post_raw(client, raw: bytes | str):
    return client.generic("POST", SUBMIT_URL, raw, content_type="application/json")


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("model", "openai/m\u0000", "model"),
        ("fallbacks", ["openai/a", "openai/\u0000"], "fallbacks[1]"),
        ("stop", ["ok", "\u0000"], "stop[1]"),
        ("suffix", "end\u0000", "suffix"),
        ("user", "\u0000", "user"),
        ("logit_bias", {"50256\u0000": 1}, "logit_bias"),
    ],
)
def test_nul_in_any_string_parameter_is_400_naming_it(key_client, field, value, param):
    response = post_raw(key_client, json.dumps(BASE | {field: value}))
    assert_error_shape(response, 400, code="invalid_characters", param=param)
    assert AsyncJob.objects.count() == 0


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"model": "openai/m", "prompt": "a\x00b"}', id="raw-nul-byte-in-string"),
        pytest.param(b'{"model": "openai/m",\x00 "prompt": "x"}', id="raw-nul-byte-between"),
        pytest.param(b'\xef\xbb\xbf{"model": "openai/m", "prompt": "x"}', id="utf8-bom"),
        pytest.param('{"model": "openai/m", "prompt": "x"}'.encode("utf-16"), id="utf-16"),
        pytest.param(b'{"model": "openai/m", "prompt": "\xc0\xaf"}', id="overlong-utf8"),
        pytest.param(b'{"model": "openai/m", "prompt": "\xed\xa0\x80"}', id="encoded-surrogate"),
        pytest.param(b'{"model": "openai/m", "prompt": "\\udc00\\ud800"}', id="reversed-pair"),
        pytest.param(b'{"model": "openai/m", "prompt": "x"}\x00', id="trailing-nul"),
    ],
)
def test_malformed_text_in_the_body_is_a_400(key_client, raw):
    assert_error_shape(post_raw(key_client, raw), 400)
    assert AsyncJob.objects.count() == 0


ODD_TEXT = [
    pytest.param("\u202eevil\u202c", id="right-to-left-override"),
    pytest.param("a\u200bb\u200dc\ufeff", id="zero-width-and-bom"),
    pytest.param("\U0001f469\u200d\U0001f4bb \U0001f3f3\ufe0f\u200d\U0001f308", id="emoji-zwj"),
    pytest.param("e\u0301\u0327\u0308" * 50, id="stacked-combining-marks"),
    pytest.param("\uffff\ufffe\U0010ffff", id="noncharacters"),
    pytest.param("line\u2028para\u2029", id="unicode-line-separators"),
    pytest.param("\x01\x07\x1b[31m\x7f", id="control-characters"),
    pytest.param("\U00020000\U0002a6d6", id="astral-cjk"),
]


@pytest.mark.parametrize("text", ODD_TEXT)
def test_odd_unicode_in_prompts_is_accepted_and_kept_exactly(key_client, dispatched, text):
    body = BASE | {"prompt": [text, "plain"], "suffix": text, "user": text[:256], "stop": [text]}
    response = post_raw(key_client, json.dumps(body))
    assert response.status_code == 202, response.content
    stored = AsyncJob.objects.get().request
    assert stored["prompt"] == [text, "plain"]
    assert stored["suffix"] == text and stored["stop"] == [text]


@pytest.mark.parametrize(
    "model",
    ["\uff4f\uff50\uff45\uff4e\uff41\uff49/m", "openai\u200b/m", "OPENAI/m", "op\u0000enai/m"],
    ids=["fullwidth-provider", "zero-width-in-provider", "uppercase-provider", "nul-in-provider"],
)
def test_a_provider_name_that_only_looks_configured_is_a_400_naming_model(key_client, model):
    response = post_raw(key_client, json.dumps(BASE | {"model": model}))
    assert_error_shape(response, 400, param="model")
    assert AsyncJob.objects.count() == 0


@pytest.mark.parametrize(
    "credential",
    [
        "sk-bf-\x00",
        "\x00",
        "sk-bf-abc\x00def",
        "sk-bf-\u00e9\u00e8",
        "ey\x00.e30.x",
        "sk-bf-" + "\u00ff" * 60,
    ],
)
def test_nul_or_odd_bytes_in_a_credential_are_401(api_client, credential):
    for headers in (bearer(credential), {"x-bf-vk": credential}):
        response = api_client.post(SUBMIT_URL, BASE, format="json", headers=headers)
        assert_unauthorized(response)
    assert AsyncJob.objects.count() == 0


@pytest.mark.parametrize(
    "job_id",
    ["%00", "\x00", "%E2%80%AE", "\u202e", "..%2F..%2Fadmin", "%ff%fe", "a" * 5000],
    ids=["escaped-nul", "nul", "escaped-rlo", "rlo", "traversal", "invalid-utf8", "very-long"],
)
def test_a_hostile_job_id_is_404(key_client, job_id):
    response = key_client.get(f"{SUBMIT_URL}/{job_id}")
    assert_error_shape(response, 404)


CONTROL_CHARACTERS = [
    pytest.param("\n", id="newline"),
    pytest.param("\r", id="carriage-return"),
    pytest.param("\x1b[2J", id="escape-sequence"),
    pytest.param("\x7f", id="delete"),
    pytest.param("\x85", id="c1-next-line"),
    pytest.param("\x9b", id="c1-control-sequence-introducer"),
    pytest.param("\u2028", id="line-separator"),
    pytest.param("\u2029", id="paragraph-separator"),
    pytest.param("\u202e", id="right-to-left-override"),
]


def printable_log(caplog: pytest.LogCaptureFixture) -> None:
    """Every captured log line holds printable characters only."""
    for record in caplog.records:
        message = record.getMessage()
        assert message.isprintable(), f"raw control character logged: {message!r}"


@pytest.mark.parametrize("char", CONTROL_CHARACTERS)
@pytest.mark.parametrize("where", ["inside", "at-the-end", "alone"])
def test_a_control_character_in_model_is_400_naming_model(key_client, caplog, char, where):
    caplog.set_level(logging.DEBUG)
    model = {"inside": f"openai/m{char}x", "at-the-end": f"openai/m{char}", "alone": char}[where]
    body = assert_error_shape(
        post_raw(key_client, json.dumps(BASE | {"model": model})),
        400,
        code="invalid_characters",
        param="model",
    )
    assert repr(model) in body["error"]["message"]
    assert AsyncJob.objects.count() == 0
    printable_log(caplog)


@pytest.mark.parametrize("char", CONTROL_CHARACTERS)
@pytest.mark.parametrize("where", ["inside", "alone"])
def test_a_control_character_in_a_fallback_is_400_naming_fallbacks(key_client, caplog, char, where):
    caplog.set_level(logging.DEBUG)
    fallback = f"openai/b{char}INFO forged log line" if where == "inside" else char
    fallbacks = ["openai/a", fallback]
    response = post_raw(key_client, json.dumps(BASE | {"fallbacks": fallbacks}))
    assert_error_shape(response, 400, code="invalid_characters", param="fallbacks[1]")
    assert AsyncJob.objects.count() == 0
    printable_log(caplog)
