"""GET /v1/async/completions/{id}: status codes by job state, and who may see what."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import JobStatus
from tests.factories import AsyncJobFactory, VirtualKeyFactory

pytestmark = pytest.mark.django_db


def url(job_id: object) -> str:
    return f"/v1/async/completions/{job_id}"


@pytest.mark.parametrize("status", [JobStatus.PENDING, JobStatus.PROCESSING])
def test_poll_returns_202_while_pending_or_processing(key, key_client, status):
    job = AsyncJobFactory(virtual_key=key, status=status)
    response = key_client.get(url(job.id))
    assert response.status_code == 202
    assert response.json()["status"] == status
    assert response.json()["result"] is None


def test_poll_returns_200_with_result_when_completed(key, key_client):
    done = timezone.now()
    result = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [{"text": "hi", "index": 0, "logprobs": None, "finish_reason": "stop"}],
    }
    job = AsyncJobFactory(
        virtual_key=key,
        status=JobStatus.COMPLETED,
        completed_at=done,
        expires_at=done + timedelta(seconds=3600),
        status_code=200,
        result=result,
    )
    body = key_client.get(url(job.id)).json()
    assert body["status"] == "completed"
    assert body["result"] == result
    assert body["status_code"] == 200
    assert body["completed_at"].endswith("Z") and body["expires_at"].endswith("Z")


def test_poll_returns_200_with_error_when_failed(key, key_client):
    error = {
        "event_id": "e",
        "type": "invalid_request_error",
        "is_bifrost_error": False,
        "status_code": 400,
        "error": {
            "type": "invalid_request_error",
            "code": "x",
            "message": "bad",
            "param": None,
            "event_id": "e",
        },
        "extra_fields": {
            "provider": "openai",
            "model_requested": "openai/m",
            "request_type": "text_completion",
        },
    }
    now = timezone.now()
    job = AsyncJobFactory(
        virtual_key=key,
        status=JobStatus.FAILED,
        status_code=400,
        error=error,
        completed_at=now,
        expires_at=now + timedelta(hours=1),
    )
    response = key_client.get(url(job.id))
    assert response.status_code == 200
    assert response.json()["status"] == "failed"
    assert response.json()["status_code"] == 400
    assert response.json()["error"] == error


def test_poll_returns_404_for_unknown_id(key_client):
    response = key_client.get(url(uuid.uuid4()))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "job_not_found"


def test_poll_returns_404_for_id_that_is_not_a_uuid(key_client):
    assert key_client.get(url("not-a-uuid")).status_code == 404


def test_poll_returns_404_for_another_keys_job(key_client):
    other = AsyncJobFactory(virtual_key=VirtualKeyFactory())
    assert key_client.get(url(other.id)).status_code == 404


def test_poll_returns_404_for_expired_job_not_yet_purged(key, key_client):
    past = timezone.now() - timedelta(seconds=1)
    job = AsyncJobFactory(
        virtual_key=key, status=JobStatus.COMPLETED, completed_at=past, expires_at=past, result={}
    )
    assert key_client.get(url(job.id)).status_code == 404


def test_poll_returns_404_for_job_of_another_request_type(key, key_client):
    job = AsyncJobFactory(virtual_key=key, request_type="chat_completion")
    assert key_client.get(url(job.id)).status_code == 404


def test_poll_without_credentials_is_401(api_client, key):
    job = AsyncJobFactory(virtual_key=key)
    response = api_client.get(url(job.id))
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
