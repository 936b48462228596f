"""GET /metrics: who may read it, and what it reads from the database at each scrape."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from gateway.access.tokens import ROLE_ADMIN, ROLE_VIRTUAL_KEY, issue_token
from jobs.models import AsyncJob, JobStatus
from tests.factories import AsyncJobFactory

pytestmark = pytest.mark.django_db

TOKEN = "metrics-scraper-token-abcdef0123456789"


def _get(api_client, authorization=None):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    return api_client.get("/metrics", **headers)


def _value(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, text
    return float(match.group(1))


def test_metrics_answer_the_prometheus_text_to_an_admin_jwt(api_client):
    response = _get(api_client, f"Bearer {issue_token(role=ROLE_ADMIN)}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert "# TYPE gateway_jobs_pending gauge" in response.content.decode()


def test_metrics_answer_the_metrics_token_when_it_is_set(api_client, settings):
    settings.GATEWAY_METRICS_TOKEN = TOKEN
    assert _get(api_client, f"Bearer {TOKEN}").status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer not-the-token", f"Bearer {TOKEN}-and-more", f"Basic {TOKEN}", "Bearer "],
)
def test_metrics_refuse_anyone_else_with_a_401_in_the_error_shape(
    api_client, settings, authorization
):
    settings.GATEWAY_METRICS_TOKEN = TOKEN
    response = _get(api_client, authorization)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="gateway"'
    body = response.json()
    assert body["error"]["type"] == "authentication_error"
    assert body["error"]["event_id"] == body["event_id"]
    assert TOKEN not in response.content.decode()


def test_without_the_setting_no_token_reads_the_metrics(api_client, settings):
    settings.GATEWAY_METRICS_TOKEN = ""
    assert _get(api_client, "Bearer ").status_code == 401
    assert _get(api_client, f"Bearer {TOKEN}").status_code == 401


def test_a_virtual_key_or_its_jwt_does_not_read_the_metrics(api_client, key):
    assert _get(api_client, f"Bearer {key.raw}").status_code == 401
    jwt = issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk)
    assert _get(api_client, f"Bearer {jwt}").status_code == 401


def test_metrics_take_only_get(api_client):
    admin = f"Bearer {issue_token(role=ROLE_ADMIN)}"
    response = api_client.post("/metrics", HTTP_AUTHORIZATION=admin)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_pending_jobs_and_the_oldest_ones_age_are_read_at_each_scrape(api_client, settings):
    settings.GATEWAY_METRICS_TOKEN = TOKEN
    empty = _get(api_client, f"Bearer {TOKEN}").content.decode()
    assert _value(empty, "gateway_jobs_pending") == 0
    assert _value(empty, "gateway_oldest_pending_job_age_seconds") == 0
    oldest = AsyncJobFactory(status=JobStatus.PENDING)
    AsyncJobFactory(status=JobStatus.PENDING)
    AsyncJobFactory(status=JobStatus.PROCESSING)
    AsyncJob.objects.filter(pk=oldest.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    text = _get(api_client, f"Bearer {TOKEN}").content.decode()
    assert _value(text, "gateway_jobs_pending") == 2
    assert 300 <= _value(text, "gateway_oldest_pending_job_age_seconds") < 330


def test_answers_are_counted_by_operation_type_and_status(key_client, api_client, settings):
    settings.GATEWAY_METRICS_TOKEN = TOKEN

    def polls_404() -> float:
        text = _get(api_client, f"Bearer {TOKEN}").content.decode()
        labels = 'operation="poll",request_type="text_completion",status_code="404"'
        match = re.search(rf"^gateway_api_requests_total\{{{labels}\}} (\S+)$", text, re.M)
        return float(match.group(1)) if match else 0.0

    before = polls_404()
    key_client.get("/v1/async/completions/00000000-0000-0000-0000-000000000000")
    key_client.get("/v1/async/completions/not-a-uuid")
    assert polls_404() == before + 2
