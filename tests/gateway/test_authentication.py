from __future__ import annotations

import base64
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from gateway.access.tokens import ROLE_ADMIN, issue_token
from jobs.models import AsyncJob
from tests.factories import VirtualKeyFactory
from tests.helpers import (
    SUBMIT_URL,
    VALID_BODY,
    assert_error_shape,
    assert_unauthorized,
    bearer,
    unknown_job_url,
)

pytestmark = pytest.mark.django_db


def test_poll_without_credentials_is_401_with_www_authenticate_and_error_shape(api_client):
    body = assert_unauthorized(api_client.get(unknown_job_url()), code="missing_api_key")
    assert set(body["extra_fields"]) >= {"provider", "model_requested", "request_type"}


def test_submit_without_credentials_is_401_and_stores_nothing(api_client):
    response = api_client.post(SUBMIT_URL, VALID_BODY, format="json")
    assert_unauthorized(response, code="missing_api_key")
    assert AsyncJob.objects.count() == 0


def test_unknown_virtual_key_is_401(api_client):
    response = api_client.get(unknown_job_url(), headers=bearer("sk-bf-not-a-real-key"))
    assert_unauthorized(response, code="invalid_api_key")


def test_token_that_is_neither_key_nor_jwt_is_401(api_client):
    response = api_client.get(unknown_job_url(), headers=bearer("hello"))
    assert_unauthorized(response)


def test_inactive_key_is_401(api_client):
    key = VirtualKeyFactory(is_active=False)
    response = api_client.get(unknown_job_url(), headers=bearer(key.raw))
    assert_unauthorized(response, code="inactive_api_key")


def test_expired_key_is_401(api_client):
    key = VirtualKeyFactory(expires_at=timezone.now() - timedelta(seconds=1))
    response = api_client.get(unknown_job_url(), headers=bearer(key.raw))
    assert_unauthorized(response, code="inactive_api_key")


def test_expired_key_cannot_submit(api_client):
    key = VirtualKeyFactory(expires_at=timezone.now() - timedelta(seconds=1))
    response = api_client.post(SUBMIT_URL, VALID_BODY, format="json", headers=bearer(key.raw))
    assert_unauthorized(response)
    assert AsyncJob.objects.count() == 0


def test_valid_key_passes_auth_and_unknown_job_is_404(key_client):
    assert_error_shape(key_client.get(unknown_job_url()), 404, code="job_not_found")


def test_valid_key_can_submit(key_client, key, dispatched):
    response = key_client.post(SUBMIT_URL, VALID_BODY, format="json")
    assert response.status_code == 202, response.content
    assert AsyncJob.objects.get().virtual_key == key


def test_x_bf_vk_header_authenticates(api_client, key):
    response = api_client.get(unknown_job_url(), headers={"x-bf-vk": key.raw})
    assert_error_shape(response, 404, code="job_not_found")


def test_x_bf_vk_header_with_wrong_key_is_401(api_client):
    response = api_client.get(unknown_job_url(), headers={"x-bf-vk": "sk-bf-wrong"})
    assert_unauthorized(response, code="invalid_api_key")


def test_x_bf_vk_header_with_inactive_key_is_401(api_client):
    key = VirtualKeyFactory(is_active=False)
    response = api_client.get(unknown_job_url(), headers={"x-bf-vk": key.raw})
    assert_unauthorized(response, code="inactive_api_key")


def test_bad_authorization_header_is_not_rescued_by_a_valid_x_bf_vk(api_client, key):
    headers = {"Authorization": "Bearer sk-bf-wrong", "x-bf-vk": key.raw}
    assert_unauthorized(api_client.get(unknown_job_url(), headers=headers))


def test_basic_authorization_is_401(api_client, key):
    basic = base64.b64encode(f"user:{key.raw}".encode()).decode()
    response = api_client.get(unknown_job_url(), headers={"Authorization": f"Basic {basic}"})
    assert_unauthorized(response, code="invalid_api_key")


def test_bearer_scheme_without_token_is_401(api_client):
    response = api_client.get(unknown_job_url(), headers={"Authorization": "Bearer "})
    assert_unauthorized(response)


def test_bearer_scheme_is_case_insensitive(api_client, key):
    response = api_client.get(unknown_job_url(), headers={"Authorization": f"bearer {key.raw}"})
    assert_error_shape(response, 404)


def test_overlong_token_is_401(api_client):
    response = api_client.get(unknown_job_url(), headers=bearer("sk-bf-" + "a" * 9000))
    assert_unauthorized(response)


@pytest.mark.parametrize(
    "make_key",
    [
        pytest.param(lambda: VirtualKeyFactory(is_active=False), id="inactive"),
        pytest.param(
            lambda: VirtualKeyFactory(expires_at=timezone.now() - timedelta(days=1)), id="expired"
        ),
    ],
)
def test_refused_key_is_never_echoed_in_the_response(api_client, make_key):
    key = make_key()
    for response in (
        api_client.get(unknown_job_url(), headers=bearer(key.raw)),
        api_client.get(unknown_job_url(), headers={"x-bf-vk": key.raw}),
        api_client.post(SUBMIT_URL, VALID_BODY, format="json", headers=bearer(key.raw)),
    ):
        assert response.status_code == 401
        assert key.raw not in response.content.decode()
        assert key.raw not in str(response.headers)


def test_wrong_key_is_never_echoed_in_the_response(api_client):
    wrong = "sk-bf-this-key-does-not-exist-0123456789"
    response = api_client.get(unknown_job_url(), headers=bearer(wrong))
    assert response.status_code == 401
    assert wrong not in response.content.decode()


def test_valid_key_is_never_echoed_in_the_response(key_client, key, dispatched):
    responses = [
        key_client.get(unknown_job_url()),
        key_client.post(SUBMIT_URL, VALID_BODY, format="json"),
        key_client.post(SUBMIT_URL, {"model": "openai/gpt-test"}, format="json"),
    ]
    assert [r.status_code for r in responses] == [404, 202, 400]
    for response in responses:
        assert key.raw not in response.content.decode()
        assert key.raw not in str(response.headers)


def test_x_bf_vk_refuses_a_jwt(api_client):
    token = issue_token(role=ROLE_ADMIN)
    response = api_client.get(f"/v1/async/completions/{uuid.uuid4()}", HTTP_X_BF_VK=token)
    assert response.status_code == 401
