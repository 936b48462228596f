"""The API's fast path (jobs/fastpath.py) answers exactly as DRF's full dispatch does.

Every case is sent twice, once down each path, and the two answers are compared field by field
(ids, event ids and times aside, which differ between any two requests).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import RequestFactory
from rest_framework.test import APIClient
from rest_framework.views import APIView

from jobs import fastpath
from jobs.fastpath import takes_fast_path
from jobs.models import AsyncJob, JobStatus
from tests.factories import AsyncJobFactory
from tests.helpers import SUBMIT_URL, VALID_BODY, Bells, poll_url

pytestmark = pytest.mark.django_db

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HEX_RE = re.compile(r"\b[0-9a-f]{32}\b")
TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT[0-9:.]+Z")


@pytest.fixture
def drf_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of requests that went through DRF's full cycle (``APIView.initial``)."""
    calls: list[str] = []
    initial = APIView.initial

    def spy(self: APIView, request: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(request.path)
        initial(self, request, *args, **kwargs)

    monkeypatch.setattr(APIView, "initial", spy)
    return calls


@pytest.fixture
def both_paths(
    monkeypatch: pytest.MonkeyPatch, drf_calls: list[str]
) -> Iterator[Callable[[Callable[[], Any]], tuple[Any, Any]]]:
    """Run a request on the fast path, then again with the fast path switched off."""

    def run(send: Callable[[], Any]) -> tuple[Any, Any]:
        drf_calls.clear()
        fast = send()
        assert drf_calls == [], "expected the fast path"
        with monkeypatch.context() as patch:
            patch.setattr(fastpath, "takes_fast_path", lambda request, methods: False)
            slow = send()
        assert drf_calls, "expected DRF's path"
        return fast, slow

    yield run


def _normalised(response: Any) -> tuple[int, dict[str, str], str]:
    headers = {k: v for k, v in response.headers.items() if k != "Content-Length"}
    if "Location" in headers:
        headers["Location"] = UUID_RE.sub("<id>", headers["Location"])
    body = response.content.decode()
    for pattern, placeholder in ((UUID_RE, "<id>"), (HEX_RE, "<event>"), (TIME_RE, "<time>")):
        body = pattern.sub(placeholder, body)
    return response.status_code, headers, body


def _same(pair: tuple[Any, Any]) -> tuple[int, dict[str, str], str]:
    fast, slow = map(_normalised, pair)
    assert fast == slow
    return fast


@pytest.fixture
def client_for(key: Any) -> Callable[..., APIClient]:
    def make(authorization: str | None = f"Bearer {key.raw}") -> APIClient:
        api = APIClient()
        if authorization is not None:
            api.credentials(HTTP_AUTHORIZATION=authorization)
        return api

    return make


def _with(member: bytes) -> bytes:
    """A valid body with one more member, written as raw JSON."""
    return json.dumps(VALID_BODY).encode()[:-1] + b", " + member + b"}"


SUBMIT_CASES: dict[str, tuple[str | None, bytes, dict[str, str]]] = {
    # name: (authorization, raw body, extra headers)
    "accepted": ("key", json.dumps(VALID_BODY).encode(), {}),
    "accepted with a ttl": ("key", json.dumps(VALID_BODY).encode(), {"ttl": "60"}),
    "no credentials": (None, json.dumps(VALID_BODY).encode(), {}),
    "unknown key": ("Bearer sk-bf-" + "x" * 40, json.dumps(VALID_BODY).encode(), {}),
    "basic auth": ("Basic dXNlcjpwYXNz", json.dumps(VALID_BODY).encode(), {}),
    "malformed json": ("key", b'{"model": ', {}),
    "not an object": ("key", b"[1, 2]", {}),
    "nan": ("key", b'{"model": "openai/gpt-test", "prompt": "x", "temperature": NaN}', {}),
    "nul character": ("key", json.dumps({**VALID_BODY, "prompt": "a\x00b"}).encode(), {}),
    "unknown parameter": ("key", json.dumps({**VALID_BODY, "colour": "red"}).encode(), {}),
    "wrong type": ("key", json.dumps({**VALID_BODY, "max_tokens": "5"}).encode(), {}),
    "streaming": ("key", json.dumps({**VALID_BODY, "stream": True}).encode(), {}),
    "unknown provider": ("key", json.dumps({**VALID_BODY, "model": "nope/x"}).encode(), {}),
    "bad ttl": ("key", json.dumps(VALID_BODY).encode(), {"ttl": "0x10"}),
    "too large": ("key", b'{"prompt": "' + b"a" * (1024 * 1024) + b'"}', {}),
    "400-digit temperature": ("key", _with(b'"temperature": ' + b"9" * 400), {}),
    "negative 400-digit top_p": ("key", _with(b'"top_p": -' + b"9" * 400), {}),
    "400-digit penalty": ("key", _with(b'"presence_penalty": ' + b"9" * 400), {}),
    "5000-digit max_tokens": ("key", _with(b'"max_tokens": 1' + b"0" * 4999), {}),
    "1e999 frequency penalty": ("key", _with(b'"frequency_penalty": 1e999'), {}),
    "-1e999 seed": ("key", _with(b'"seed": -1e999'), {}),
    "400-digit n": ("key", _with(b'"n": ' + b"9" * 400), {}),
    "1e999 best_of": ("key", _with(b'"best_of": 1e999'), {}),
    "400-digit logprobs": ("key", _with(b'"logprobs": -' + b"9" * 400), {}),
    "400-digit logit_bias value": ("key", _with(b'"logit_bias": {"1": ' + b"9" * 400 + b"}"), {}),
    "400-digit logit_bias key": ("key", _with(b'"logit_bias": {"' + b"9" * 400 + b'": 1}'), {}),
    "nested past the limit": ("key", _with(b'"stop": ' + b"[" * 100 + b"]" * 100), {}),
    "nested past the decoder": ("key", _with(b'"stop": ' + b"[" * 5000 + b"]" * 5000), {}),
    "newline in model": ("key", json.dumps({**VALID_BODY, "model": "openai/m\nx"}).encode(), {}),
    "line separator in fallbacks": (
        "key",
        json.dumps({**VALID_BODY, "fallbacks": ["openai/a\u2028"]}).encode(),
        {},
    ),
}

# Cases refused with a 400 that names what is wrong (None: the body as a whole).
REFUSED_NAMING = {
    "400-digit temperature": "temperature",
    "negative 400-digit top_p": "top_p",
    "400-digit penalty": "presence_penalty",
    "5000-digit max_tokens": "max_tokens",
    "1e999 frequency penalty": "frequency_penalty",
    "-1e999 seed": "seed",
    "400-digit n": "n",
    "1e999 best_of": "best_of",
    "400-digit logprobs": "logprobs",
    "400-digit logit_bias value": "logit_bias",
    "400-digit logit_bias key": "logit_bias",
    "nested past the limit": None,
    "nested past the decoder": None,
    "newline in model": "model",
    "line separator in fallbacks": "fallbacks",
}


@pytest.mark.parametrize("case", SUBMIT_CASES, ids=list(SUBMIT_CASES))
def test_submits_answer_the_same_on_both_paths(
    case: str, key: Any, client_for: Callable[..., APIClient], both_paths: Any, dispatched: Any
) -> None:
    authorization, raw, extra = SUBMIT_CASES[case]
    client = client_for(f"Bearer {key.raw}" if authorization == "key" else authorization)
    headers = {"x-bf-async-job-result-ttl": extra["ttl"]} if "ttl" in extra else {}

    def send() -> Any:
        return client.generic(
            "POST", SUBMIT_URL, raw.decode(), content_type="application/json", headers=headers
        )

    status, headers_seen, body = _same(both_paths(send))
    assert status < 500
    assert headers_seen["Allow"] == "POST, OPTIONS"
    if case in REFUSED_NAMING:
        assert status == 400
        assert json.loads(body)["error"]["param"] == REFUSED_NAMING[case]


def test_a_submit_on_each_path_creates_one_job_each(
    key_client: APIClient,
    both_paths: Any,
    dispatched: Bells,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        status, _, _ = _same(
            both_paths(lambda: key_client.post(SUBMIT_URL, VALID_BODY, format="json"))
        )
    assert status == 202
    assert AsyncJob.objects.count() == 2
    assert dispatched.rung == 2


def test_polls_answer_the_same_on_both_paths(
    key: Any, key_client: APIClient, both_paths: Any
) -> None:
    completed: Any = AsyncJobFactory(
        virtual_key=key,
        status=JobStatus.COMPLETED,
        status_code=200,
        result={"object": "text_completion", "choices": [{"text": "\u2028hi"}]},
    )
    pending: Any = AsyncJobFactory(virtual_key=key)
    foreign: Any = AsyncJobFactory()  # another key's
    expected = {
        str(completed.id): 200,
        str(pending.id): 202,
        str(foreign.id): 404,
        str(uuid.uuid4()): 404,
        "not-a-uuid": 404,
    }
    for job_id, status in expected.items():
        url = poll_url(job_id)
        seen, headers, _ = _same(both_paths(lambda url=url: key_client.get(url)))
        assert seen == status
        assert headers["Allow"] == "GET, HEAD, OPTIONS"
    # DRF's renderer escapes U+2028 for JavaScript; so does the fast path.
    fast = key_client.get(poll_url(completed.id))
    assert b"\\u2028hi" in fast.content


def test_a_poll_without_credentials_is_401_on_both_paths(api_client: APIClient, both_paths: Any):
    status, headers, _ = _same(both_paths(lambda: api_client.get(poll_url(uuid.uuid4()))))
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Bearer realm="gateway"'


def test_a_database_error_is_503_on_the_fast_path(
    key_client: APIClient, drf_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import OperationalError

    def down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr("jobs.views.get_visible_job", down)
    response = key_client.get(poll_url(uuid.uuid4()))
    assert drf_calls == []
    assert response.status_code == 503
    assert json.loads(response.content)["error"]["code"] == "service_unavailable"


def test_a_bug_on_the_fast_path_surfaces_as_a_500(
    key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("jobs.views.get_visible_job", broken)
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.raw}")
    response = client.get(poll_url(uuid.uuid4()))
    assert response.status_code == 500
    assert json.loads(response.content)["error"]["code"] == "internal_error"


FAST = frozenset({"GET", "POST"})


@pytest.mark.parametrize(
    ("method", "meta", "fast"),
    [
        ("GET", {}, True),
        ("GET", {"HTTP_ACCEPT": "*/*"}, True),
        ("GET", {"HTTP_ACCEPT": " application/json "}, True),
        ("GET", {"HTTP_ACCEPT": "text/html"}, False),
        ("GET", {"HTTP_ACCEPT": "application/json; indent=2"}, False),
        ("GET", {"QUERY_STRING": "format=json"}, False),
        ("HEAD", {}, False),
        ("OPTIONS", {}, False),
        ("DELETE", {}, False),
        ("POST", {"CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "2"}, True),
        ("POST", {"CONTENT_TYPE": "application/json; charset=utf-8", "CONTENT_LENGTH": "2"}, True),
        ("POST", {"CONTENT_TYPE": "text/plain", "CONTENT_LENGTH": "2"}, False),
        ("POST", {"CONTENT_TYPE": "application/jsonx", "CONTENT_LENGTH": "2"}, False),
        ("POST", {"CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "0"}, False),
        ("POST", {"CONTENT_TYPE": "application/json", "CONTENT_LENGTH": ""}, False),
        ("POST", {"CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "\uff12"}, False),
        ("POST", {"CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "\u00b2"}, False),
        ("POST", {"CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "0" * 5000}, False),
        ("POST", {"CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "9" * 5000}, True),
    ],
)
def test_which_requests_take_the_fast_path(method: str, meta: dict[str, str], fast: bool) -> None:
    request = RequestFactory().generic(method, "/v1/async/completions")
    request.META.pop("CONTENT_TYPE", None)
    request.META.pop("CONTENT_LENGTH", None)
    request.META.update(meta)
    assert takes_fast_path(request, FAST) is fast


def test_a_method_outside_fast_methods_never_takes_it() -> None:
    request = RequestFactory().get("/v1/async/completions/x")
    assert takes_fast_path(request, frozenset({"POST"})) is False
