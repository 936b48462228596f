"""No provider key and no virtual key in any response, job row or log line of the real processes.

Jobs succeed and fail every way the fake upstream can make them, several echoing the provider
key back (in an error, in a reply no adapter can read, in a successful reply), and the API
refuses requests every way it can; then the web and worker logs, every HTTP response the tests
received and every job row are scanned. test_async_completions_e2e.py has the first, smaller
scan (a 400 that echoes the key, a 500, a success).
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

import pytest

from harness.upstream import UPSTREAM_ANTHROPIC_KEY, UPSTREAM_OPENAI_KEY

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.e2e.conftest import Database, Gateway, GatewayClient

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("gateway")]

# Jobs that end in every way, most with the provider key echoed somewhere in the upstream reply.
JOBS = [
    {"model": "openai/ok"},
    {"model": "anthropic/ok"},
    {"model": "openai/leak-200"},
    {"model": "anthropic/leak-200"},
    {"model": "openai/leak-500"},
    {"model": "anthropic/leak-500"},
    {"model": "openai/leak-garbled"},
    {"model": "anthropic/leak-garbled"},
    {"model": "openai/bad-400", "fallbacks": ["anthropic/leak-500", "openai/leak-200"]},
    {"model": "anthropic/bad-400", "fallbacks": ["openai/leak-500"]},
    {"model": "openai/flaky-503"},
    {"model": "openai/redirect-307"},
    {"model": "anthropic/redirect-308"},
    {"model": "anthropic/html-502"},
]


def slices(secret: str, width: int = 12) -> list[str]:
    """The secret and every run of ``width`` of its characters: a partial leak is a leak too."""
    return [secret, *(secret[i : i + width] for i in range(len(secret) - width + 1))]


def submit_refused(api: GatewayClient, key: str, inactive: str, limited: str) -> list[int]:
    """Requests the API refuses, each carrying a key; returns their statuses."""
    body = {"model": "openai/ok", "prompt": "refused"}
    answers = [
        api.submit(key, body | {"stream": True}),
        api.submit(key, body, headers={"x-bf-async-job-result-ttl": "1e3"}),
        api.submit(key, body | {"model": "nosuch/ok"}),
        api.submit(key, body | {"prompt": 42}),
        api.submit(inactive, body),
        api.submit("", body, headers={"x-bf-vk": inactive}),
        api.submit(key + "x", body),
        api.submit(limited, body | {"model": "anthropic/ok"}),
        api.get(key, f"/v1/async/completions/{uuid.uuid4()}"),
        api.get(inactive, f"/v1/async/completions/{uuid.uuid4()}"),
    ]
    return [answer.status_code for answer in answers]


def test_no_key_leaks_into_responses_job_rows_or_logs(
    api: GatewayClient, make_key: Callable[..., str], e2e_db: Database, gateway: Gateway
) -> None:
    from jobs.models import AsyncJob

    key = make_key()
    inactive = make_key(is_active=False)
    limited = make_key(allowed_models=["openai/*"])
    job_ids = [
        api.submit_ok(key, body | {"prompt": f"leak? {uuid.uuid4().hex}"}, ttl=600) for body in JOBS
    ]
    job_ids.append(
        api.submit_ok("", {"model": "openai/ok", "prompt": "by header"}, headers={"x-bf-vk": key})
    )
    outcomes = [api.poll_until_done(key, job_id).json()["status"] for job_id in job_ids]
    refused = submit_refused(api, key, inactive, limited)

    assert "completed" in outcomes and "failed" in outcomes, outcomes
    assert refused == [400, 400, 400, 400, 401, 401, 401, 403, 404, 401]
    with e2e_db.access():
        rows = [
            json.dumps([job.request, job.result, job.error])
            for job in AsyncJob.objects.filter(virtual_key_id__in=e2e_db.key_ids)
        ]
    places = {
        "HTTP responses": api.bodies,
        "job rows": rows,
        **{f"{name} log": [text] for name, text in gateway.logs().items()},
    }
    secrets = {
        "OpenAI provider key": UPSTREAM_OPENAI_KEY,
        "Anthropic provider key": UPSTREAM_ANTHROPIC_KEY,
        "virtual key": key,
        "inactive virtual key": inactive,
        "model-limited virtual key": limited,
    }
    leaks = [
        f"{name} in {place}"
        for name, secret in secrets.items()
        for place, texts in places.items()
        if any(part in text for text in texts for part in slices(secret))
    ]
    assert leaks == []
