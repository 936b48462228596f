"""Redirects and non-JSON error pages from a provider, through the real web server and worker.

A redirect is never followed: neither the provider key nor the prompt reaches the host its
Location names (a second listener of the fake upstream that records every request), and the job
fails at once with the gateway's ``upstream_redirect`` error. An HTML error page is not relayed:
the job's error says so in a generic message, and the page stays in the worker's log, redacted.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

import httpx
import pytest

from harness.upstream import (
    ANTHROPIC_PATH,
    HTML_ERROR_MARKER,
    OPENAI_PATH,
    REDIRECT_BODY,
    REDIRECT_QUERY_TOKEN,
    UPSTREAM_ANTHROPIC_KEY,
    UPSTREAM_OPENAI_KEY,
    FakeUpstream,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.e2e.conftest import Gateway, GatewayClient

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("gateway")]

KEYS = {"openai": UPSTREAM_OPENAI_KEY, "anthropic": UPSTREAM_ANTHROPIC_KEY}
PATHS = {"openai": OPENAI_PATH, "anthropic": ANTHROPIC_PATH}
REDIRECTS = [
    (provider, status) for provider in ("openai", "anthropic") for status in (302, 307, 308)
]


def test_redirect_from_provider_fails_the_job_without_following_it(
    api: GatewayClient, make_key: Callable[..., str], upstream: FakeUpstream, gateway: Gateway
) -> None:
    key = make_key()
    prompts = {case: f"internal notes {uuid.uuid4().hex}" for case in REDIRECTS}
    job_ids = {
        (provider, status): api.submit_ok(
            key, {"model": f"{provider}/redirect-{status}", "prompt": prompts[provider, status]}
        )
        for provider, status in REDIRECTS
    }

    jobs = {case: api.poll_until_done(key, job_id).json() for case, job_id in job_ids.items()}

    for (provider, status), job in jobs.items():
        assert job["status"] == "failed", job
        assert job["status_code"] == 502
        error = job["error"]
        assert error["is_bifrost_error"] is True
        assert error["error"]["code"] == "upstream_redirect"
        assert f"HTTP {status}" in error["error"]["message"]
        assert error["extra_fields"]["provider"] == provider
        # Not transient: one try, no retry on the same target.
        assert error["extra_fields"]["attempts"] == [
            {
                "provider": provider,
                "model": f"redirect-{status}",
                "status_code": 502,
                "code": "upstream_redirect",
                "retryable": False,
            }
        ]
        text = json.dumps(job)
        for hidden in (REDIRECT_QUERY_TOKEN, REDIRECT_BODY, upstream.trap_url, KEYS[provider]):
            assert hidden not in text
        [call] = upstream.calls(prompt=prompts[provider, status])
        assert (call.path, call.status) == (PATHS[provider], status)
    assert upstream.trap_calls() == []
    for log in gateway.logs().values():
        assert REDIRECT_QUERY_TOKEN not in log
    # The trap was listening all along: a request sent to it is recorded.
    httpx.post(f"{upstream.trap_url}/probe", content=b"probe", timeout=10)
    assert [(c.method, c.path, c.body) for c in upstream.trap_calls()] == [
        ("POST", "/probe", b"probe")
    ]


def test_redirect_from_the_primary_moves_to_the_fallback(
    api: GatewayClient, make_key: Callable[..., str], upstream: FakeUpstream
) -> None:
    key = make_key()
    prompt = f"fallback after redirect {uuid.uuid4().hex}"
    body = {"model": "anthropic/redirect-307", "prompt": prompt, "fallbacks": ["openai/ok"]}

    job = api.poll_until_done(key, api.submit_ok(key, body)).json()

    assert job["status"] == "completed", job
    assert [call.model for call in upstream.calls(prompt=prompt)] == ["redirect-307", "ok"]
    assert not any(prompt.encode() in call.body for call in upstream.trap_calls())


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_html_error_page_is_not_relayed_and_is_logged_redacted(
    api: GatewayClient,
    make_key: Callable[..., str],
    upstream: FakeUpstream,
    gateway: Gateway,
    provider: str,
) -> None:
    key = make_key()
    prompt = f"html error {uuid.uuid4().hex}"

    job = api.poll_until_done(
        key, api.submit_ok(key, {"model": f"{provider}/html-502", "prompt": prompt})
    ).json()

    assert job["status"] == "failed", job
    assert job["status_code"] == 502
    error = job["error"]
    assert error["error"]["message"] == f"{provider} returned a non-JSON error (HTTP 502)"
    assert error["is_bifrost_error"] is False
    assert HTML_ERROR_MARKER not in json.dumps(job) and "<html" not in json.dumps(job)
    # 502 is transient: every try of the target hit the page.
    assert len(upstream.calls(prompt=prompt)) == 3
    worker_log = gateway.logs()["worker-0"]
    logged = [line for line in worker_log.splitlines() if HTML_ERROR_MARKER in line]
    assert logged, "the page is kept in the worker's log"
    assert all(KEYS[provider] not in line and "\x1b" not in line for line in logged)
    assert any("\\x1b[2J" in line and "[redacted]" in line for line in logged)
