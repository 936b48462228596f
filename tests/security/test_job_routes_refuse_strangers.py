"""Every job route refuses anonymous callers (401) and never shows one key another key's job (404).

Already proven elsewhere, not repeated here: a poll of another key's job by key
(tests/jobs/test_poll_api.py) and by virtual-key JWT (tests/gateway/test_jwt.py), the same 404
for unknown and foreign ids, an admin JWT reading every job, and over real HTTP
(tests/e2e/test_async_completions_e2e.py::test_poll_returns_404_for_another_keys_job).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from gateway.access.tokens import ROLE_VIRTUAL_KEY, issue_token
from gateway.http.errors import WWW_AUTHENTICATE
from jobs.models import AsyncJob, JobStatus
from tests.factories import AsyncJobFactory, VirtualKeyFactory
from tests.helpers import SUBMIT_URL, VALID_BODY, assert_error_shape, poll_url

pytestmark = pytest.mark.django_db

SECRET_PROMPT = "the owner's confidential prompt"
SECRET_ANSWER = "the owner's confidential answer"


def owned_job(status: str) -> AsyncJob:
    """A job of some key, in ``status``, whose prompt and answer must never reach a stranger."""
    now = timezone.now()
    done = status in (JobStatus.COMPLETED, JobStatus.FAILED)
    return AsyncJobFactory(
        status=status,
        request={"prompt": SECRET_PROMPT},
        result={"object": "text_completion", "choices": [{"text": SECRET_ANSWER}]}
        if status == JobStatus.COMPLETED
        else None,
        completed_at=now if done else None,
        expires_at=now + timedelta(hours=1) if done else None,
        status_code=200 if done else None,
    )


def job_route_calls(job: AsyncJob) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, client kwargs) of every request a job route answers."""
    poll = poll_url(job.id)
    body = {"data": json.dumps(VALID_BODY), "content_type": "application/json"}
    return [
        ("post", SUBMIT_URL, body),
        ("options", SUBMIT_URL, {}),
        ("get", poll, {}),
        ("head", poll, {}),
        ("options", poll, {}),
    ]


CREDENTIALS = {
    "none": lambda: {},
    "empty-bearer": lambda: {"Authorization": "Bearer "},
    "unknown-key": lambda: {"Authorization": "Bearer sk-bf-not-a-key-of-this-gateway"},
    "unknown-key-as-x-bf-vk": lambda: {"x-bf-vk": "sk-bf-not-a-key-of-this-gateway"},
    "garbage-jwt": lambda: {"Authorization": "Bearer a.b.c"},
    "inactive-key": lambda: {"Authorization": f"Bearer {VirtualKeyFactory(is_active=False).raw}"},
    "expired-key": lambda: {
        "Authorization": "Bearer "
        + VirtualKeyFactory(expires_at=timezone.now() - timedelta(seconds=1)).raw
    },
    "jwt-of-a-deleted-key": lambda: {"Authorization": f"Bearer {_jwt_of_deleted_key()}"},
}


def _jwt_of_deleted_key() -> str:
    key = VirtualKeyFactory()
    token = issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk)
    key.delete()
    return token


@pytest.mark.parametrize("credential", list(CREDENTIALS))
@pytest.mark.parametrize(
    "call", range(5), ids=["submit", "submit-options", "poll", "poll-head", "poll-options"]
)
def test_every_job_route_refuses_a_caller_without_a_valid_credential_with_401(
    api_client, credential, call
):
    job = owned_job(JobStatus.COMPLETED)
    method, path, kwargs = job_route_calls(job)[call]
    response = getattr(api_client, method)(path, headers=CREDENTIALS[credential](), **kwargs)
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == WWW_AUTHENTICATE
    if method != "head":
        assert_error_shape(response, 401)
        assert SECRET_PROMPT not in response.content.decode()
    assert AsyncJob.objects.count() == 1, "nothing is stored for a refused caller"


STATUSES = [JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.COMPLETED, JobStatus.FAILED]


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("method", ["get", "head"])
@pytest.mark.parametrize("how", ["bearer", "x-bf-vk"])
def test_poll_returns_404_for_another_keys_job_in_every_state(api_client, status, method, how):
    job = owned_job(status)
    stranger = VirtualKeyFactory().raw
    headers = {"Authorization": f"Bearer {stranger}"} if how == "bearer" else {"x-bf-vk": stranger}
    response = getattr(api_client, method)(poll_url(job.id), headers=headers)
    assert response.status_code == 404
    if method == "get":
        body = assert_error_shape(response, 404, code="job_not_found")
        text = json.dumps(body)
        assert SECRET_PROMPT not in text and SECRET_ANSWER not in text
        assert status not in (body["error"]["message"] or "")


def test_a_key_with_the_same_allowed_models_still_cannot_see_the_job(api_client):
    owner = VirtualKeyFactory(allowed_models=["openai/*"])
    twin = VirtualKeyFactory(allowed_models=["openai/*"])
    job = AsyncJobFactory(virtual_key=owner)
    response = api_client.get(poll_url(job.id), headers={"Authorization": f"Bearer {twin.raw}"})
    assert_error_shape(response, 404, code="job_not_found")


def test_a_new_key_never_inherits_the_jobs_of_a_deleted_key(api_client):
    owner = VirtualKeyFactory()
    job = AsyncJobFactory(virtual_key=owner)
    owner.delete()
    newcomer = VirtualKeyFactory()
    response = api_client.get(poll_url(job.id), headers={"Authorization": f"Bearer {newcomer.raw}"})
    assert response.status_code == 404
