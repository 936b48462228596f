"""GET /v1/async/completions/{id}: status codes by job state, and who may see what."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import AsyncJob, JobStatus
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


def test_poll_reads_the_job_in_one_query_that_leaves_the_request_out(
    key, key_client, django_assert_num_queries
):
    job = AsyncJobFactory(virtual_key=key, request={"prompt": "x" * 10_000})
    key_client.get(url(uuid.uuid4()))  # the key is read (and cached) by this first request
    with django_assert_num_queries(1) as captured:
        assert key_client.get(url(job.id)).status_code == 202
    sql = captured.captured_queries[0]["sql"]
    assert re.search(r'"request"(?!_)', sql) is None
    assert "x" * 100 not in sql


def test_poll_returns_404_to_a_key_for_a_job_submitted_with_an_admin_token(key_client):
    job = AsyncJobFactory(virtual_key=None)
    assert key_client.get(url(job.id)).status_code == 404


def test_poll_answers_the_same_404_for_unknown_and_foreign_jobs(key_client):
    other = AsyncJobFactory(virtual_key=VirtualKeyFactory())
    unknown = key_client.get(url(uuid.uuid4())).json()
    foreign = key_client.get(url(other.id)).json()
    assert unknown["error"]["code"] == foreign["error"]["code"] == "job_not_found"
    assert unknown["type"] == foreign["type"] == "not_found_error"


def test_polled_job_carries_every_field_of_the_answer(key, key_client):
    done = timezone.now()
    job = AsyncJobFactory(
        virtual_key=key,
        status=JobStatus.COMPLETED,
        created_at=done - timedelta(seconds=5),
        completed_at=done,
        expires_at=done + timedelta(hours=1),
        status_code=200,
        result={"object": "text_completion", "choices": []},
    )
    body = key_client.get(url(job.id)).json()
    assert body == {
        "id": str(job.id),
        "status": "completed",
        "created_at": job.created_at.isoformat().replace("+00:00", "Z"),
        "expires_at": job.expires_at.isoformat().replace("+00:00", "Z"),
        "completed_at": job.completed_at.isoformat().replace("+00:00", "Z"),
        "status_code": 200,
        "result": {"object": "text_completion", "choices": []},
        "error": None,
    }


@pytest.mark.parametrize(
    ("age_seconds", "expected"), [(0, "1"), (9, "1"), (25, "3"), (295, "30"), (86400, "60")]
)
def test_poll_of_an_unfinished_job_says_when_to_poll_again(key, key_client, age_seconds, expected):
    job = AsyncJobFactory(virtual_key=key, status=JobStatus.PENDING)
    AsyncJob.objects.filter(pk=job.pk).update(
        created_at=timezone.now() - timedelta(seconds=age_seconds)
    )
    response = key_client.get(url(job.id))
    assert response.status_code == 202
    assert response["Retry-After"] == expected


def test_poll_of_a_finished_job_sends_no_retry_after(key, key_client):
    done = timezone.now()
    job = AsyncJobFactory(
        virtual_key=key,
        status=JobStatus.COMPLETED,
        completed_at=done,
        expires_at=done + timedelta(seconds=3600),
        status_code=200,
        result={"id": "cmpl-1"},
    )
    response = key_client.get(url(job.id))
    assert response.status_code == 200
    assert "Retry-After" not in response
