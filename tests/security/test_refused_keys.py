"""Inactive and expired virtual keys are refused on every route and by every way of sending them.

Polls with an inactive or expired key, an expired key's submit and the JWTs of such keys are
proven in tests/gateway/test_authentication.py and test_jwt.py; the key cache's part in
tests/gateway/test_key_cache.py. These cover the submits and headers left out.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from gateway.access.tokens import ROLE_VIRTUAL_KEY, issue_token
from jobs.models import AsyncJob
from tests.factories import AsyncJobFactory, VirtualKeyFactory
from tests.helpers import SUBMIT_URL, VALID_BODY, assert_unauthorized, poll_url

pytestmark = pytest.mark.django_db

REFUSED_KEYS = {
    "inactive": {"is_active": False},
    "expired": {"expires_at": timezone.now() - timedelta(days=1)},
    "inactive-and-expired": {"is_active": False, "expires_at": timezone.now() - timedelta(days=1)},
}


def credentials(key, how: str) -> dict[str, str]:
    if how == "bearer":
        return {"Authorization": f"Bearer {key.raw}"}
    if how == "x-bf-vk":
        return {"x-bf-vk": key.raw}
    return {"Authorization": f"Bearer {issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk)}"}


def refused_key(state: str):
    """A key that was usable when its JWT was issued, then put in ``state``."""
    key = VirtualKeyFactory()
    key.token = issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk)
    for name, value in REFUSED_KEYS[state].items():
        setattr(key, name, value)
    key.save()
    return key


@pytest.mark.parametrize("state", list(REFUSED_KEYS))
@pytest.mark.parametrize("how", ["bearer", "x-bf-vk", "jwt"])
def test_a_refused_key_cannot_submit_and_nothing_is_stored(api_client, state, how):
    key = refused_key(state)
    headers = {"Authorization": f"Bearer {key.token}"} if how == "jwt" else credentials(key, how)
    response = api_client.post(SUBMIT_URL, VALID_BODY, format="json", headers=headers)
    assert_unauthorized(response, code="inactive_api_key")
    assert AsyncJob.objects.count() == 0


@pytest.mark.parametrize("state", list(REFUSED_KEYS))
@pytest.mark.parametrize("how", ["bearer", "x-bf-vk", "jwt"])
def test_a_refused_key_cannot_read_even_its_own_jobs(api_client, state, how):
    key = refused_key(state)
    job = AsyncJobFactory(virtual_key=key)
    headers = {"Authorization": f"Bearer {key.token}"} if how == "jwt" else credentials(key, how)
    assert_unauthorized(api_client.get(poll_url(job.id), headers=headers))


def test_a_key_that_expires_now_is_refused(api_client, monkeypatch):
    moment = timezone.now()
    key = VirtualKeyFactory(expires_at=moment)
    monkeypatch.setattr("gateway.access.models.timezone.now", lambda: moment)
    response = api_client.post(
        SUBMIT_URL, VALID_BODY, format="json", headers=credentials(key, "bearer")
    )
    assert_unauthorized(response, code="inactive_api_key")


def test_a_reactivated_key_is_accepted_again(api_client, dispatched):
    key = refused_key("inactive")
    key.is_active = True
    key.save()
    response = api_client.post(
        SUBMIT_URL, VALID_BODY, format="json", headers=credentials(key, "bearer")
    )
    assert response.status_code == 202, response.content
