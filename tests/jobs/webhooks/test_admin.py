"""Webhooks in the admin: endpoints made with their secret shown once, deliveries re-sent."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs.models import JobStatus
from jobs.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from jobs.webhooks.services import add_delivery
from tests.factories import AsyncJobFactory

pytestmark = pytest.mark.django_db

SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]{40,}")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def failed_delivery(endpoint: WebhookEndpoint) -> WebhookDelivery:
    job = AsyncJobFactory(status=JobStatus.COMPLETED, completed_at=timezone.now())
    add_delivery(job, endpoint)
    WebhookDelivery.objects.filter(job_id=job.pk).update(
        status=DeliveryStatus.FAILED, attempts=3, last_status_code=404, last_error="HTTP 404"
    )
    return WebhookDelivery.objects.get(job_id=job.pk)


@pytest.mark.parametrize("model", ["webhooks_webhookendpoint", "webhooks_webhookdelivery"])
def test_changelists_render_their_rows(admin_client, endpoint, model):
    failed_delivery(endpoint)
    response = admin_client.get(reverse(f"admin:{model}_changelist"))
    assert response.status_code == 200
    assert response.context["cl"].result_count == 1
    assert endpoint.secret not in response.content.decode()


def test_pages_show_the_secrets_prefix_never_the_secret(admin_client, endpoint):
    delivery = failed_delivery(endpoint)
    for url in (
        reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk]),
        reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk]),
    ):
        page = admin_client.get(url).content.decode()
        assert endpoint.secret not in page
    assert (
        endpoint.secret_prefix
        in admin_client.get(
            reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk])
        ).content.decode()
    )


def test_adding_an_endpoint_answers_with_its_secret_once(admin_client):
    response = admin_client.post(
        reverse("admin:webhooks_webhookendpoint_add"),
        {"name": "orders", "url": "https://hooks.example.test/in", "is_active": "on"},
    )

    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"]
    [secret] = set(SECRET.findall(response.content.decode()))
    endpoint = WebhookEndpoint.objects.get(name="orders")
    assert endpoint.get_secret() == secret
    assert all(secret not in value for _, value in response.items())
    again = admin_client.get(reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk]))
    assert secret not in again.content.decode()


def test_the_admin_refuses_a_url_that_is_not_http(admin_client):
    response = admin_client.post(
        reverse("admin:webhooks_webhookendpoint_add"),
        {"name": "bad", "url": "ftp://example.test/in", "is_active": "on"},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["url"]
    assert not WebhookEndpoint.objects.exists()


def test_the_endpoint_list_links_to_its_deliveries(admin_client, endpoint):
    failed_delivery(endpoint)
    page = admin_client.get(reverse("admin:webhooks_webhookendpoint_changelist"))
    link = f"?endpoint__id__exact={endpoint.pk}"
    assert link in page.content.decode()
    filtered = admin_client.get(reverse("admin:webhooks_webhookdelivery_changelist") + link)
    assert filtered.context["cl"].result_count == 1


def test_resend_makes_the_selected_deliveries_due_now(admin_client, endpoint):
    chosen, other = failed_delivery(endpoint), failed_delivery(endpoint)

    response = admin_client.post(
        reverse("admin:webhooks_webhookdelivery_changelist"),
        {"action": "resend", "_selected_action": [str(chosen.pk)]},
        follow=True,
    )

    assert response.status_code == 200
    assert "1 deliveries will be sent again now." in response.content.decode()
    resent = WebhookDelivery.objects.get(pk=chosen.pk)
    assert resent.status == DeliveryStatus.PENDING
    assert resent.next_attempt_at is not None and resent.next_attempt_at <= timezone.now()
    assert WebhookDelivery.objects.get(pk=other.pk).status == DeliveryStatus.FAILED
