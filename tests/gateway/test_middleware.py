"""The API needs no cookie machinery; the admin keeps its CSRF protection without the middleware."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from gateway.access.models import VirtualKey
from jobs.models import AsyncJob
from tests.helpers import SUBMIT_URL, VALID_BODY, bearer

pytestmark = pytest.mark.django_db

PASSWORD = "a-password-for-this-test"


@pytest.fixture
def csrf_client() -> Client:
    """A browser that does not skip CSRF checks, as the test client otherwise does."""
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def admin_user(settings: Any) -> Any:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)


def test_admin_login_without_a_csrf_token_is_refused(csrf_client, admin_user):
    response = csrf_client.post(reverse("admin:login"), {"username": "root", "password": PASSWORD})
    assert response.status_code == 403
    assert "_auth_user_id" not in csrf_client.session


def test_admin_login_with_its_csrf_token_signs_in(csrf_client, admin_user):
    page = csrf_client.get(reverse("admin:login"))
    token = page.context["csrf_token"]
    response = csrf_client.post(
        reverse("admin:login"),
        {"username": "root", "password": PASSWORD, "csrfmiddlewaretoken": str(token)},
    )
    assert response.status_code == 302
    assert csrf_client.session["_auth_user_id"] == str(admin_user.pk)


def test_admin_form_post_without_a_csrf_token_changes_nothing(csrf_client, admin_user):
    csrf_client.force_login(admin_user)
    response = csrf_client.post(reverse("admin:gateway_virtualkey_add"), {"name": "forged"})
    assert response.status_code == 403
    assert not VirtualKey.objects.filter(name="forged").exists()


def test_admin_logout_without_a_csrf_token_is_refused(csrf_client, admin_user):
    csrf_client.force_login(admin_user)
    assert csrf_client.post(reverse("admin:logout")).status_code == 403
    assert "_auth_user_id" in csrf_client.session


def test_api_submit_with_a_bearer_token_needs_no_csrf_token(csrf_client, key, dispatched):
    response = csrf_client.post(
        SUBMIT_URL, VALID_BODY, content_type="application/json", headers=bearer(key.raw)
    )
    assert response.status_code == 202
    assert AsyncJob.objects.count() == 1


def test_api_responses_set_no_cookies(csrf_client, key, dispatched):
    response = csrf_client.post(
        SUBMIT_URL, VALID_BODY, content_type="application/json", headers=bearer(key.raw)
    )
    assert response.status_code == 202
    assert not response.cookies


def _attributes_seen(path: str) -> set[str]:
    """Which of session, user and messages the admin middleware gave a request to ``path``."""
    from django.test import RequestFactory

    from gateway.middleware import (
        AdminAuthenticationMiddleware,
        AdminMessageMiddleware,
        AdminSessionMiddleware,
    )

    seen: set[str] = set()

    def view(request: Any) -> Any:
        from django.http import HttpResponse

        seen.update(name for name in ("session", "user", "_messages") if hasattr(request, name))
        return HttpResponse()

    chain = AdminSessionMiddleware(AdminAuthenticationMiddleware(AdminMessageMiddleware(view)))
    chain(RequestFactory().get(path))
    return seen


def test_api_requests_get_no_session_user_or_messages():
    assert _attributes_seen("/v1/async/completions/some-id") == set()


def test_admin_requests_get_session_user_and_messages():
    assert _attributes_seen("/admin/jobs/asyncjob/") == {"session", "user", "_messages"}
