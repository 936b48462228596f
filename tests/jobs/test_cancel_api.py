"""POST /v1/async/<type>/{id}/cancel: a pending or processing job becomes ``cancelled``."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from gateway.access.principals import Principal
from gateway.access.tokens import ROLE_ADMIN, issue_token
from jobs import services
from jobs.models import TERMINAL_STATUSES, AsyncJob, JobStatus
from jobs.request_types import KINDS
from tests.factories import AsyncJobFactory, VirtualKeyFactory
from tests.helpers import assert_error_shape

pytestmark = pytest.mark.django_db

every_kind = pytest.mark.parametrize("kind", KINDS, ids=[kind.name for kind in KINDS])


def cancel_url(job: Any, path: str = "async/completions") -> str:
    return f"/v1/{path}/{job if isinstance(job, str) else job.id}/cancel"


def poll_url(job: Any, path: str = "async/completions") -> str:
    return f"/v1/{path}/{job.id}"


@pytest.fixture
def admin_client() -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {issue_token(role=ROLE_ADMIN)}")
    return api


def test_cancelled_is_a_terminal_status():
    assert JobStatus.CANCELLED == "cancelled"
    assert JobStatus.CANCELLED in TERMINAL_STATUSES


@every_kind
def test_cancel_of_a_pending_job_answers_200_with_the_job_now_cancelled(key, key_client, kind):
    job = AsyncJobFactory(virtual_key=key, request_type=kind.request_type, result_ttl=120)
    before = timezone.now()
    response = key_client.post(cancel_url(job, kind.path))
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {
        "id",
        "status",
        "created_at",
        "expires_at",
        "completed_at",
        "status_code",
        "result",
        "error",
    }
    assert (body["id"], body["status"]) == (str(job.id), "cancelled")
    assert (body["result"], body["error"], body["status_code"]) == (None, None, None)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert before <= job.completed_at <= timezone.now()
    assert job.expires_at == job.completed_at + timedelta(seconds=120)
    assert body["completed_at"] == job.completed_at.isoformat().replace("+00:00", "Z")


def test_cancel_of_a_processing_job_answers_200_and_releases_its_lease(key, key_client):
    job = AsyncJobFactory(
        virtual_key=key,
        status=JobStatus.PROCESSING,
        claimed_by="some-worker",
        lease_expires_at=timezone.now() + timedelta(seconds=60),
    )
    response = key_client.post(cancel_url(job))
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    job.refresh_from_db()
    assert (job.status, job.lease_expires_at) == (JobStatus.CANCELLED, None)


def test_a_cancelled_job_polls_200_cancelled(key, key_client):
    job = AsyncJobFactory(virtual_key=key)
    cancelled = key_client.post(cancel_url(job)).json()
    poll = key_client.get(poll_url(job))
    assert poll.status_code == 200
    assert poll.json() == cancelled


def test_a_cancel_needs_no_body_or_content_type(key, key_client):
    job = AsyncJobFactory(virtual_key=key)
    response = key_client.generic("POST", cancel_url(job), "", content_type="")
    assert response.status_code == 200, response.content


def test_a_cancel_ignores_a_body(key, key_client):
    job = AsyncJobFactory(virtual_key=key)
    response = key_client.post(cancel_url(job), "not json", content_type="text/plain")
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_cancel_of_a_job_that_has_ended_is_409(key, key_client, status):
    done = timezone.now()
    job = AsyncJobFactory(
        virtual_key=key,
        status=status,
        completed_at=done,
        expires_at=done + timedelta(hours=1),
        result={"kept": True} if status == JobStatus.COMPLETED else None,
    )
    response = key_client.post(cancel_url(job))
    body = assert_error_shape(response, 409, code="job_not_cancellable")
    assert status in body["error"]["message"]
    assert body["extra_fields"]["request_type"] == "text_completion"
    unchanged = AsyncJob.objects.get(pk=job.pk)
    assert (unchanged.status, unchanged.completed_at) == (status, done)


def test_cancel_of_an_unknown_job_is_404(key_client):
    response = key_client.post(cancel_url(str(uuid.uuid4())))
    assert_error_shape(response, 404, code="job_not_found")


def test_cancel_of_an_id_that_is_not_a_uuid_is_404(key_client):
    assert_error_shape(key_client.post(cancel_url("not-a-uuid")), 404, code="job_not_found")


def test_cancel_of_another_keys_job_is_404_and_leaves_it_alone(key_client):
    theirs = AsyncJobFactory(virtual_key=VirtualKeyFactory())
    assert_error_shape(key_client.post(cancel_url(theirs)), 404, code="job_not_found")
    assert AsyncJob.objects.get(pk=theirs.pk).status == JobStatus.PENDING


def test_cancel_of_an_admin_tokens_job_is_404_for_a_key(key_client):
    job = AsyncJobFactory(virtual_key=None)
    assert_error_shape(key_client.post(cancel_url(job)), 404, code="job_not_found")


def test_cancel_of_an_expired_job_is_404(key, key_client):
    past = timezone.now() - timedelta(seconds=1)
    job = AsyncJobFactory(
        virtual_key=key, status=JobStatus.COMPLETED, completed_at=past, expires_at=past, result={}
    )
    assert_error_shape(key_client.post(cancel_url(job)), 404, code="job_not_found")


def test_cancel_of_a_job_of_another_type_is_404_and_leaves_it_alone(key, key_client):
    job = AsyncJobFactory(virtual_key=key, request_type="chat_completion")
    assert_error_shape(key_client.post(cancel_url(job)), 404, code="job_not_found")
    assert AsyncJob.objects.get(pk=job.pk).status == JobStatus.PENDING


def test_an_admin_token_may_cancel_any_keys_job(admin_client):
    job = AsyncJobFactory(virtual_key=VirtualKeyFactory())
    response = admin_client.post(cancel_url(job))
    assert response.status_code == 200
    assert AsyncJob.objects.get(pk=job.pk).status == JobStatus.CANCELLED


def test_cancel_without_credentials_is_401(api_client, key):
    job = AsyncJobFactory(virtual_key=key)
    response = api_client.post(cancel_url(job))
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert AsyncJob.objects.get(pk=job.pk).status == JobStatus.PENDING


def test_cancel_is_post_only(key, key_client):
    job = AsyncJobFactory(virtual_key=key)
    assert_error_shape(key_client.get(cancel_url(job)), 405)


def test_a_cancelled_job_is_never_claimed(key, key_client):
    job = AsyncJobFactory(virtual_key=key)
    key_client.post(cancel_url(job))
    assert services.claim_pending_jobs(10, "a-worker") == []
    assert AsyncJob.objects.get(pk=job.pk).attempts == 0


def test_a_worker_finishing_after_the_cancel_writes_nothing(key, key_client):
    job = AsyncJobFactory(virtual_key=key)
    [claimed] = services.claim_pending_jobs(1, "a-worker")
    key_client.post(cancel_url(job))
    finish = services.Finish(claimed.pk, claimed.result_ttl, 200, result={"late": True})
    assert services.finish_jobs("a-worker", [finish]) == [False]
    job.refresh_from_db()
    assert (job.status, job.result) == (JobStatus.CANCELLED, None)


def test_a_cancel_that_loses_the_race_to_the_workers_finish_is_409(key, key_client, monkeypatch):
    """The job was processing when read, and the worker wrote its result before the cancel's
    UPDATE: the UPDATE changes nothing and the caller hears 409, never a 200 for a job that
    completed."""
    job = AsyncJobFactory(virtual_key=key)
    [claimed] = services.claim_pending_jobs(1, "a-worker")
    read = services.get_visible_job

    def read_then_worker_finishes(*args: Any) -> Any:
        seen = read(*args)
        finish = services.Finish(claimed.pk, claimed.result_ttl, 200, result={"won": True})
        services.finish_jobs("a-worker", [finish])
        return seen

    monkeypatch.setattr("jobs.services.get_visible_job", read_then_worker_finishes)
    response = key_client.post(cancel_url(job))
    assert_error_shape(response, 409, code="job_not_cancellable")
    job.refresh_from_db()
    assert (job.status, job.result) == (JobStatus.COMPLETED, {"won": True})


def race_cancel_and_finish(job: AsyncJob, claimed: AsyncJob) -> dict[str, bool]:
    """Run the caller's cancel and the worker's finish of one job at the same moment, each on
    its own connection; which of them wrote."""
    results: dict[str, bool] = {}
    start = threading.Barrier(2)

    def cancel() -> None:
        start.wait()
        try:
            principal = Principal(virtual_key=job.virtual_key)
            services.cancel_job(str(job.pk), principal, "text_completion")
            results["cancel"] = True
        except services.JobNotCancellable:
            results["cancel"] = False
        finally:
            connection.close()

    def finish() -> None:
        start.wait()
        try:
            done = services.Finish(claimed.pk, claimed.result_ttl, 200, result={"r": 1})
            results["finish"] = services.finish_jobs("a-worker", [done])[0]
        finally:
            connection.close()

    threads = [threading.Thread(target=cancel), threading.Thread(target=finish)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.mark.django_db(transaction=True)
def test_a_cancel_racing_a_finish_has_exactly_one_winner():
    for _ in range(15):
        job = AsyncJobFactory()
        [claimed] = services.claim_pending_jobs(1, "a-worker")
        results = race_cancel_and_finish(job, claimed)
        assert sorted(results.values()) == [False, True], results
        final = AsyncJob.objects.get(pk=job.pk)
        expected = JobStatus.CANCELLED if results["cancel"] else JobStatus.COMPLETED
        assert final.status == expected


def test_a_cancelled_job_is_purged_once_it_expires(key, key_client):
    job = AsyncJobFactory(virtual_key=key, result_ttl=1)
    key_client.post(cancel_url(job))
    assert services.purge_expired_jobs() == 0  # kept for its TTL, like any ended job
    AsyncJob.objects.filter(pk=job.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert services.purge_expired_jobs() == 1
    assert not AsyncJob.objects.filter(pk=job.pk).exists()


def test_cancel_routes_are_named_after_each_kind():
    for kind in KINDS:
        url = reverse(f"cancel-{kind.name}", args=["x"])
        assert url == f"/v1/{kind.path}/x/cancel"


def test_the_admins_job_list_offers_and_applies_the_cancelled_filter(client, admin_user, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    client.force_login(admin_user)
    cancelled = AsyncJobFactory(status=JobStatus.CANCELLED)
    AsyncJobFactory(status=JobStatus.PENDING)
    response = client.get(reverse("admin:jobs_asyncjob_changelist"), {"status": "cancelled"})
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [cancelled]
    assert "?status=cancelled" in response.content.decode()


def test_the_api_document_lists_a_cancel_operation_for_every_kind(api_client):
    document = api_client.get("/openapi.json").json()
    for kind in KINDS:
        operation = document["paths"][f"/v1/{kind.path}/{{job_id}}/cancel"]["post"]
        assert operation["operationId"] == f"cancel_async_{kind.name}"
        assert {"200", "401", "404", "409"} <= set(operation["responses"])
        assert "requestBody" not in operation
        conflict = operation["responses"]["409"]["content"]["application/json"]["schema"]
        assert conflict["$ref"].endswith("/Error")
    status = document["components"]["schemas"]["StatusEnum"]["enum"]
    assert "cancelled" in status
