"""Whatever a caller sends, no log record of the web side holds a virtual key or a token.

Records are captured at DEBUG from every logger while requests succeed and fail in every way
the API refuses them. The worker side and the provider keys are scanned over real processes in
tests/e2e/test_secrets_never_leak_e2e.py.
"""

from __future__ import annotations

import logging
import time
import uuid

import pytest

from gateway.access.tokens import ROLE_ADMIN, ROLE_VIRTUAL_KEY, issue_token
from jobs.ttl import TTL_HEADER
from tests.factories import VirtualKeyFactory
from tests.gateway.test_jwt import claims, hs256
from tests.helpers import SUBMIT_URL, VALID_BODY, bearer, poll_url

pytestmark = pytest.mark.django_db


def logged_text(records: list[logging.LogRecord]) -> str:
    parts = []
    for record in records:
        parts.append(record.getMessage())
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
        parts.append(repr(getattr(record, "request", "")))
    return "\n".join(parts)


def test_no_log_record_holds_a_virtual_key_or_token(api_client, key, dispatched, caplog):
    caplog.set_level(logging.DEBUG)
    inactive = VirtualKeyFactory(is_active=False)
    jwt_of_key = issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk)
    admin_jwt = issue_token(role=ROLE_ADMIN)
    expired_jwt = hs256(claims(exp=int(time.time()) - 60))
    unknown = "sk-bf-" + uuid.uuid4().hex * 2
    secrets = [key.raw, inactive.raw, jwt_of_key, admin_jwt, expired_jwt, unknown]

    job_id = api_client.post(SUBMIT_URL, VALID_BODY, format="json", headers=bearer(key.raw))
    job_id = job_id.json()["id"]
    calls = [
        ("get", poll_url(job_id), bearer(key.raw), {}),
        ("get", poll_url(job_id), {"x-bf-vk": key.raw}, {}),
        ("get", poll_url(job_id), bearer(jwt_of_key), {}),
        ("get", poll_url(job_id), bearer(admin_jwt), {}),
        ("get", poll_url(uuid.uuid4()), bearer(key.raw), {}),
        ("get", poll_url("not-a-uuid"), bearer(key.raw), {}),
        ("post", SUBMIT_URL, bearer(key.raw), {"data": {"model": "nosuch/m", "prompt": 1}}),
        ("post", SUBMIT_URL, bearer(key.raw) | {TTL_HEADER: "soon"}, {"data": VALID_BODY}),
        ("post", SUBMIT_URL, bearer(key.raw), {"data": "{broken", "content_type": "text/json"}),
        ("post", SUBMIT_URL, bearer(inactive.raw), {"data": VALID_BODY}),
        ("post", SUBMIT_URL, {"x-bf-vk": inactive.raw}, {"data": VALID_BODY}),
        ("post", SUBMIT_URL, bearer(expired_jwt), {"data": VALID_BODY}),
        ("post", SUBMIT_URL, bearer(unknown), {"data": VALID_BODY}),
        ("post", SUBMIT_URL, {"Authorization": f"Basic {key.raw}"}, {"data": VALID_BODY}),
        ("put", SUBMIT_URL, bearer(key.raw), {"data": VALID_BODY}),
    ]
    statuses = []
    for method, path, headers, kwargs in calls:
        kwargs = {"format": "json", **kwargs} if "content_type" not in kwargs else kwargs
        statuses.append(getattr(api_client, method)(path, headers=headers, **kwargs).status_code)

    assert statuses == [202, 202, 202, 202, 404, 404, 400, 400, 415, 401, 401, 401, 401, 401, 405]
    assert caplog.records, "the refusals above are logged (error answered)"
    text = logged_text(caplog.records)
    for secret in secrets:
        assert secret not in text
        assert secret[-20:] not in text
