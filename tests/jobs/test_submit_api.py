"""POST /v1/async/completions: what is accepted, what is refused, and what a client gets back."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime
from typing import Any

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import RequestFactory
from django.urls import set_script_prefix

from gateway.http.errors import InvalidRequest
from jobs.models import AsyncJob, JobStatus
from jobs.schemas.base import parse_request
from jobs.schemas.completions import CompletionRequest
from tests.factories import VirtualKeyFactory
from tests.helpers import assert_error_shape

URL = "/v1/async/completions"
pytestmark = pytest.mark.django_db


def submit(api: Any, body: Any, **headers: str) -> Any:
    return api.post(URL, body, format="json", **headers)


def assert_error(
    response: Any, status: int, param: str | None, *, prefix: bool = False
) -> dict[str, Any]:
    """An error in the one shape, naming ``param`` (or a param starting with it); nothing stored."""
    body = assert_error_shape(response, status)
    if prefix:
        assert (body["error"]["param"] or "").startswith(param or ""), body["error"]
    else:
        assert body["error"]["param"] == param, body["error"]
    assert AsyncJob.objects.count() == 0, "an invalid request must not be stored"
    return body


def test_valid_submit_is_202_with_pending_job_and_location(
    key_client, dispatched, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = submit(key_client, {"model": "openai/gpt-4o-mini", "prompt": "Say hi"})

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "pending"
    assert body["expires_at"] is None and body["completed_at"] is None
    assert body["status_code"] is None and body["result"] is None and body["error"] is None
    assert body["created_at"].endswith("Z")
    datetime.fromisoformat(body["created_at"].replace("Z", "+00:00"))
    assert response["Location"] == f"http://testserver/v1/async/completions/{body['id']}"
    job = AsyncJob.objects.get(pk=body["id"])
    assert (job.provider, job.model, job.status) == ("openai", "gpt-4o-mini", JobStatus.PENDING)
    assert job.request == {"prompt": "Say hi"}
    assert job.result_ttl == 3600
    assert dispatched.rung == 1


def test_model_splits_at_first_slash(key_client, dispatched, monkeypatch):
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-secret")
    response = submit(key_client, {"model": "openrouter/meta/llama-3", "prompt": "x"})
    assert response.status_code == 202
    job = AsyncJob.objects.get()
    assert (job.provider, job.model) == ("openrouter", "meta/llama-3")


def test_every_parameter_is_stored_for_upstream(key_client, dispatched):
    params = {
        "best_of": 2,
        "echo": False,
        "frequency_penalty": 0.5,
        "logit_bias": {"50256": -100},
        "logprobs": 2,
        "max_tokens": 32,
        "n": 2,
        "presence_penalty": -1.5,
        "seed": 7,
        "stop": ["\n", "END"],
        "suffix": "!",
        "temperature": 0.7,
        "top_p": 0.9,
        "user": "u-1",
    }
    response = submit(
        key_client,
        {"model": "openai/m", "prompt": ["a", "b"], "fallbacks": ["openai/c"], **params},
    )
    assert response.status_code == 202, response.content
    job = AsyncJob.objects.get()
    assert job.request == {"prompt": ["a", "b"], **params}
    assert job.fallbacks == ["openai/c"]


def test_null_optional_parameters_mean_default(key_client, dispatched):
    response = submit(
        key_client,
        {
            "model": "openai/m",
            "prompt": "x",
            "temperature": None,
            "stream": None,
            "fallbacks": None,
        },
    )
    assert response.status_code == 202
    assert AsyncJob.objects.get().request == {"prompt": "x"}


def test_stream_true_is_400_naming_stream(key_client):
    body = assert_error(
        submit(key_client, {"model": "openai/m", "prompt": "x", "stream": True}), 400, "stream"
    )
    assert body["error"]["code"] == "streaming_not_supported"


def test_stream_false_is_accepted(key_client, dispatched):
    assert (
        submit(key_client, {"model": "openai/m", "prompt": "x", "stream": False}).status_code == 202
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", 2.5),
        ("temperature", -0.1),
        ("temperature", "0.5"),
        ("temperature", True),
        ("top_p", 1.5),
        ("top_p", -1),
        ("n", 0),
        ("n", 129),
        ("n", 1.5),
        ("n", "2"),
        ("max_tokens", -1),
        ("max_tokens", "16"),
        ("logprobs", 6),
        ("logprobs", -1),
        ("best_of", 21),
        ("frequency_penalty", 2.1),
        ("presence_penalty", -2.1),
        ("seed", 2**64),
        ("seed", "1"),
        ("echo", "yes"),
        ("echo", 1),
        ("stop", ["a"] * 5),
        ("stop", 3),
        ("stop", [1]),
        ("suffix", 5),
        ("user", ["u"]),
        ("logit_bias", []),
        ("logit_bias", {"abc": 1}),
        ("logit_bias", {"1": 101}),
        ("logit_bias", {"1": "x"}),
        ("fallbacks", "openai/m"),
        ("fallbacks", [3]),
        ("stream", "true"),
    ],
)
def test_mistyped_or_out_of_range_parameter_is_400_naming_it(key_client, field, value):
    response = submit(key_client, {"model": "openai/m", "prompt": "x", field: value})
    assert_error(response, 400, field, prefix=True)


@pytest.mark.parametrize("prompt", [[], 3, None, ["a", 2], [1, "a"], [[1], 2], {"a": 1}])
def test_prompt_must_be_a_string_or_a_non_empty_array_of_one_form(key_client, prompt):
    response = submit(key_client, {"model": "openai/m", "prompt": prompt})
    assert_error(response, 400, "prompt", prefix=True)


@pytest.mark.parametrize("prompt", [[1, 2], [[1, 2], [3]]], ids=["tokens", "token lists"])
def test_a_prompt_of_token_ids_is_accepted_as_openai_takes_it(key_client, dispatched, prompt):
    response = submit(key_client, {"model": "openai/m", "prompt": prompt})
    assert response.status_code == 202, response.content
    assert AsyncJob.objects.get().request == {"prompt": prompt}


def test_missing_model_and_prompt_are_400(key_client):
    assert_error(submit(key_client, {"prompt": "x"}), 400, "model")
    assert_error(submit(key_client, {"model": "openai/m"}), 400, "prompt")


@pytest.mark.parametrize("model", ["gpt-4", "openai/", "/gpt-4", "", 42])
def test_model_not_in_provider_model_form_is_400(key_client, model):
    assert_error(submit(key_client, {"model": model, "prompt": "x"}), 400, "model")


def test_unconfigured_provider_is_400(key_client):
    body = assert_error(submit(key_client, {"model": "nosuch/m", "prompt": "x"}), 400, "model")
    assert body["error"]["code"] == "unknown_provider"


def test_bad_fallback_is_400_naming_fallbacks(key_client):
    assert_error(
        submit(key_client, {"model": "openai/m", "prompt": "x", "fallbacks": ["nosuch/m"]}),
        400,
        "fallbacks[0]",
    )
    assert_error(
        submit(key_client, {"model": "openai/m", "prompt": "x", "fallbacks": ["no-slash"]}),
        400,
        "fallbacks[0]",
    )


def test_too_many_fallbacks_is_400(key_client, settings):
    settings.GATEWAY_MAX_FALLBACKS = 2
    assert_error(
        submit(
            key_client,
            {"model": "openai/m", "prompt": "x", "fallbacks": ["openai/a", "openai/b", "openai/c"]},
        ),
        400,
        "fallbacks",
    )


def test_unknown_parameter_is_400_naming_it(key_client):
    body = assert_error(
        submit(key_client, {"model": "openai/m", "prompt": "x", "foo": 1}), 400, "foo"
    )
    assert body["error"]["code"] == "unknown_parameter"


def test_best_of_below_n_is_400(key_client):
    assert_error(
        submit(key_client, {"model": "openai/m", "prompt": "x", "n": 3, "best_of": 2}),
        400,
        "best_of",
    )


def test_too_many_prompts_is_400(key_client, settings):
    settings.GATEWAY_MAX_PROMPTS = 3
    assert_error(submit(key_client, {"model": "openai/m", "prompt": ["a"] * 4}), 400, "prompt")


def test_too_long_prompt_is_400(key_client, settings):
    settings.GATEWAY_MAX_PROMPT_CHARS = 10
    assert_error(submit(key_client, {"model": "openai/m", "prompt": "x" * 11}), 400, "prompt")


def test_key_restricted_to_models_gets_403_for_others(api_client, dispatched):
    key = VirtualKeyFactory(allowed_models=["openai/gpt-4o*"])
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.raw}")
    assert submit(api_client, {"model": "openai/gpt-4o-mini", "prompt": "x"}).status_code == 202
    AsyncJob.objects.all().delete()
    body = assert_error(
        submit(api_client, {"model": "anthropic/claude", "prompt": "x"}), 403, "model"
    )
    assert body["error"]["code"] == "model_not_allowed"
    assert_error(
        submit(
            api_client, {"model": "openai/gpt-4o", "prompt": "x", "fallbacks": ["anthropic/claude"]}
        ),
        403,
        "fallbacks[0]",
    )


@pytest.mark.parametrize(
    "ttl", ["0", "-5", "abc", "1.5", "", " ", "1e3", "٣", "99999999999999", "10\r\nX-Injected: 1"]
)
def test_invalid_result_ttl_header_is_400_naming_it(key_client, ttl):
    response = submit(
        key_client, {"model": "openai/m", "prompt": "x"}, HTTP_X_BF_ASYNC_JOB_RESULT_TTL=ttl
    )
    body = assert_error(response, 400, "x-bf-async-job-result-ttl")
    assert body["error"]["code"] == "invalid_result_ttl"


def test_result_ttl_above_maximum_is_400(key_client, settings):
    settings.GATEWAY_MAX_RESULT_TTL = 100
    assert_error(
        submit(
            key_client, {"model": "openai/m", "prompt": "x"}, HTTP_X_BF_ASYNC_JOB_RESULT_TTL="101"
        ),
        400,
        "x-bf-async-job-result-ttl",
    )


def test_result_ttl_header_is_stored(key_client, dispatched):
    response = submit(
        key_client, {"model": "openai/m", "prompt": "x"}, HTTP_X_BF_ASYNC_JOB_RESULT_TTL="60"
    )
    assert response.status_code == 202
    assert AsyncJob.objects.get().result_ttl == 60


def test_submit_when_broker_is_down_still_accepts_the_job(
    key_client, monkeypatch, django_capture_on_commit_callbacks
):
    from kombu.exceptions import OperationalError

    def broker_down(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr("jobs.dispatch._publish", broker_down)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = submit(key_client, {"model": "openai/m", "prompt": "x"})
    assert len(callbacks) == 1
    assert response.status_code == 202
    assert AsyncJob.objects.get().status == JobStatus.PENDING


@pytest.mark.parametrize("body", [None, [], "text", 3])
def test_body_that_is_not_a_json_object_is_400_invalid_body(key_client, body):
    response = key_client.post(URL, data=json.dumps(body), content_type="application/json")
    assert_error(response, 400, None)
    assert response.json()["error"]["code"] == "invalid_body"


def test_submit_is_202_even_when_publishing_fails_unexpectedly(
    key_client, monkeypatch, django_capture_on_commit_callbacks
):
    def broken_publish(*args, **kwargs):
        raise TypeError("a bug in the publishing path")

    monkeypatch.setattr("jobs.dispatch._publish", broken_publish)
    with django_capture_on_commit_callbacks(execute=True):
        response = submit(key_client, {"model": "openai/m", "prompt": "x"})
    assert response.status_code == 202
    assert AsyncJob.objects.get().status == JobStatus.PENDING


def test_errors_name_the_request_type_and_model_requested(key_client):
    response = submit(key_client, {"model": "openai/m", "prompt": "x", "temperature": 9})
    body = assert_error(response, 400, "temperature")
    assert body["extra_fields"] == {
        "provider": "openai",
        "model_requested": "openai/m",
        "request_type": "text_completion",
    }


@pytest.mark.parametrize(
    "raw",
    [
        '{"model": "openai/m", "prompt": "x", "temperature": 1e309}',
        '{"model": "openai/m", "prompt": "x", "max_tokens": ' + "9" * 5000 + "}",
        '{"model": "openai/m", "prompt": "x", "logit_bias": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"model": "openai/m", "prompt": "x", "seed": 1e400}',
        '{"model": "openai/m", "prompt": "x", "user": "\\ud800"}',
        b'{"model": "openai/m", "prompt": "\xff\xfe"}',
    ],
)
def test_hostile_json_is_a_clear_400_never_a_500(key_client, raw):
    response = key_client.post(URL, data=raw, content_type="application/json")
    assert_error_shape(response, 400)
    assert AsyncJob.objects.count() == 0


NUMERIC_PARAMS = [
    name
    for name, member in CompletionRequest.model_json_schema()["properties"].items()
    if {"integer", "number"} & {option.get("type") for option in member.get("anyOf", [member])}
]
# JSON number literals past every bound, as a client can write them; the last two read as
# infinities (see gateway/http/parsers.py), the 5000-digit one is past what Python converts to
# an int.
HUGE_LITERALS = {
    "400-digit integer": ("9" * 400, "less than or equal to"),
    "negative 400-digit integer": ("-" + "9" * 400, "greater than or equal to"),
    "5000-digit integer": ("1" + "0" * 4999, "less than or equal to"),
    "largest float": ("1.7976931348623157e308", "less than or equal to"),
    "huge exponent": ("1e999", "less than or equal to"),
    "huge negative exponent": ("-1e999", "greater than or equal to"),
}


def post_raw(api: Any, raw: str) -> Any:
    return api.generic("POST", URL, raw, content_type="application/json")


def test_every_numeric_parameter_is_covered_by_the_huge_number_cases():
    assert set(NUMERIC_PARAMS) == {
        "best_of",
        "frequency_penalty",
        "logprobs",
        "max_tokens",
        "n",
        "presence_penalty",
        "seed",
        "temperature",
        "top_p",
    }


@pytest.mark.parametrize("literal", HUGE_LITERALS, ids=list(HUGE_LITERALS))
@pytest.mark.parametrize("param", NUMERIC_PARAMS)
def test_a_huge_or_infinite_number_is_400_out_of_range_naming_its_param(
    key_client, caplog, param, literal
):
    raw, bound = HUGE_LITERALS[literal]
    caplog.set_level(logging.WARNING)
    response = post_raw(key_client, f'{{"model": "openai/m", "prompt": "x", "{param}": {raw}}}')
    body = assert_error(response, 400, param)
    assert body["error"]["code"] == "invalid_parameter"
    assert body["error"]["message"].startswith(f"{param}: Ensure this value is {bound} ")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no traceback"


@pytest.mark.parametrize(
    "logit_bias",
    [
        '{"50256": ' + "9" * 400 + "}",
        '{"50256": -' + "9" * 400 + "}",
        '{"50256": 1e999}',
        '{"50256": -1e999}',
        '{"' + "9" * 400 + '": 1}',
        '{"2147483648": 1}',
    ],
    ids=[
        "400-digit bias",
        "negative 400-digit bias",
        "infinite bias",
        "negative infinite bias",
        "400-digit token id",
        "token id past 32 bits",
    ],
)
def test_a_huge_logit_bias_value_or_token_id_is_400_naming_logit_bias(key_client, logit_bias):
    raw = f'{{"model": "openai/m", "prompt": "x", "logit_bias": {logit_bias}}}'
    body = assert_error(post_raw(key_client, raw), 400, "logit_bias")
    assert body["error"]["code"] == "invalid_parameter"


def test_the_largest_token_id_and_extreme_in_range_numbers_are_accepted(
    key_client, dispatched, settings
):
    # The schema's own range; the gateway's bound on max_tokens has tests of its own.
    settings.GATEWAY_MAX_TOKENS_PER_JOB = 10_000_000
    body = {
        "model": "openai/m",
        "prompt": "x",
        "logit_bias": {"2147483647": -100},
        "seed": -(2**63),
        "temperature": 5e-324,
        "max_tokens": 10_000_000,
    }
    response = post_raw(key_client, json.dumps(body))
    assert response.status_code == 202, response.content
    stored = AsyncJob.objects.get().request
    assert stored["logit_bias"] == {"2147483647": -100}
    assert stored["seed"] == -(2**63) and stored["temperature"] == 5e-324


@pytest.mark.parametrize("param", NUMERIC_PARAMS)
def test_the_schema_refuses_a_huge_integer_it_is_handed_directly(param):
    """Not only JSON reaches the schema: a Python int past the float range is refused too."""
    for value in (10**400, -(10**400), 10**5000):
        with pytest.raises(InvalidRequest) as refused:
            parse_request(CompletionRequest, {"model": "openai/m", "prompt": "x", param: value})
        assert refused.value.param == param


@pytest.mark.parametrize("param", ["model", "suffix", "user", "stop", "prompt"])
def test_the_schema_refuses_a_huge_integer_where_a_string_belongs(param):
    """str() of an int past 4300 digits raises: the schema must refuse it before any str()."""
    with pytest.raises(InvalidRequest) as refused:
        parse_request(CompletionRequest, {"model": "openai/m", "prompt": "x", param: 10**5000})
    assert (refused.value.param or "").startswith(param)


def test_too_many_choices_is_400_naming_n(key_client, settings):
    settings.GATEWAY_MAX_CHOICES = 10
    body = assert_error(
        submit(key_client, {"model": "openai/m", "prompt": ["a", "b", "c"], "n": 4}), 400, "n"
    )
    assert body["error"]["code"] == "too_many_choices"


def test_location_follows_forwarded_host_and_proto_behind_a_proxy(key_client, settings, dispatched):
    settings.ALLOWED_HOSTS = ["gateway.example.com"]
    settings.USE_X_FORWARDED_HOST = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    response = submit(
        key_client,
        {"model": "openai/m", "prompt": "x"},
        HTTP_X_FORWARDED_HOST="gateway.example.com",
        HTTP_X_FORWARDED_PROTO="https",
    )
    assert response.status_code == 202
    job_id = response.json()["id"]
    assert response["Location"] == f"https://gateway.example.com/v1/async/completions/{job_id}"


def test_the_first_bad_parameter_in_the_documented_order_is_named_whatever_the_body_order(
    key_client,
):
    body = {"top_p": 5, "temperature": 5, "model": "openai/m", "prompt": "x"}
    assert_error(submit(key_client, body), 400, "temperature")


def test_a_refused_submit_leaves_nothing_behind_for_the_next(key_client, dispatched):
    assert_error(submit(key_client, {"model": "openai/m", "prompt": "x", "n": 0}), 400, "n")
    assert submit(key_client, {"model": "openai/m", "prompt": "x", "n": 2}).status_code == 202
    assert AsyncJob.objects.get().request == {"prompt": "x", "n": 2}


def wsgi_submit(key: Any, script_name: str) -> tuple[str, dict[str, Any]]:
    """A submit through the WSGI entry point (the test client ignores SCRIPT_NAME)."""
    body = json.dumps({"model": "openai/m", "prompt": "x"}).encode()
    environ = {
        **RequestFactory()._base_environ(),
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": script_name,
        "PATH_INFO": URL,
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_AUTHORIZATION": f"Bearer {key.raw}",
        "wsgi.input": io.BytesIO(body),
    }
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        started.update(status=status, headers=dict(headers))

    # As the test client does: the test's transaction must outlive the request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        content = b"".join(WSGIHandler()(environ, start_response))
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
        set_script_prefix("/")
    assert started["status"].startswith("202"), content
    return started["headers"]["Location"], json.loads(content)


def test_location_keeps_the_script_prefix_the_gateway_is_mounted_under(key, dispatched):
    mounted, mounted_job = wsgi_submit(key, "/gw")
    at_root, root_job = wsgi_submit(key, "")
    assert mounted == f"http://testserver/gw/v1/async/completions/{mounted_job['id']}"
    assert at_root == f"http://testserver/v1/async/completions/{root_job['id']}"
