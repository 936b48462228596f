"""Every answer carries a Content-Security-Policy; /docs/ loads Redoc from the gateway itself."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from gateway.middleware import API_CONTENT_SECURITY_POLICY, PAGE_CONTENT_SECURITY_POLICY
from tests.helpers import SUBMIT_URL, VALID_BODY, bearer, unknown_job_url

REDOC_SCRIPT = "/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"
ANOTHER_ORIGIN = re.compile(r"""(?:src|href)=["']?(?:https?:)?//""")


def directives(policy: str) -> dict[str, list[str]]:
    parsed = (part.split() for part in policy.split(";") if part.strip())
    return {name: sources for name, *sources in parsed}


@pytest.mark.django_db
def test_api_answers_forbid_everything_and_framing(key, dispatched):
    client = Client()
    answers = [
        client.get("/health"),
        client.get("/openapi.json"),
        client.post(
            SUBMIT_URL, VALID_BODY, content_type="application/json", headers=bearer(key.raw)
        ),
        client.get(unknown_job_url(), headers=bearer(key.raw)),
        client.get("/no-such-page"),
    ]
    for response in answers:
        assert response["Content-Security-Policy"] == API_CONTENT_SECURITY_POLICY
    assert directives(API_CONTENT_SECURITY_POLICY) == {
        "default-src": ["'none'"],
        "frame-ancestors": ["'none'"],
    }


@pytest.mark.django_db
def test_docs_and_admin_pages_may_run_only_this_origins_scripts():
    client = Client()
    for path in ("/docs/", reverse("admin:login")):
        assert client.get(path)["Content-Security-Policy"] == PAGE_CONTENT_SECURITY_POLICY
    policy = directives(PAGE_CONTENT_SECURITY_POLICY)
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["worker-src"] == ["'self'", "blob:"]  # Redoc's web worker
    assert policy["frame-ancestors"] == ["'none'"]
    every_source = [source for sources in policy.values() for source in sources]
    assert not [source for source in every_source if "://" in source or "*" in source]


def test_docs_page_loads_redoc_from_the_gateway_and_nothing_from_elsewhere():
    response = Client().get("/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert f'src="{REDOC_SCRIPT}"' in page
    assert 'spec-url="/openapi.json"' in page
    assert not ANOTHER_ORIGIN.search(page), page


def test_redoc_script_is_served_by_the_web_process(settings: Any, tmp_path):
    settings.STATIC_ROOT = tmp_path
    call_command("collectstatic", interactive=False, verbosity=0)
    response = Client().get(REDOC_SCRIPT)  # whitenoise, from the collected files
    assert response.status_code == 200
    assert "javascript" in response["Content-Type"]
    assert b"Redoc" in b"".join(response.streaming_content)
