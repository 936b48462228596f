"""Virtual keys are cached per process for GATEWAY_KEY_CACHE_SECONDS, by HMAC, never by raw key."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from gateway.access import authentication
from gateway.access.authentication import KeyCache, authenticate_virtual_key
from gateway.access.models import VirtualKey
from gateway.access.tokens import ROLE_VIRTUAL_KEY, issue_token
from gateway.http.errors import AuthenticationRequired
from tests.factories import AsyncJobFactory, VirtualKeyFactory
from tests.helpers import (
    FakeClock,
    assert_error_shape,
    assert_unauthorized,
    bearer,
    unknown_job_url,
)

pytestmark = pytest.mark.django_db

TTL = 5.0


@pytest.fixture(autouse=True)
def clock(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    """The process's key cache, fresh and on a clock the test moves."""
    settings.GATEWAY_KEY_CACHE_SECONDS = TTL
    fake = FakeClock()
    monkeypatch.setattr(authentication, "key_cache", KeyCache(clock=fake))
    yield fake


def deactivate_elsewhere(key: VirtualKey) -> None:
    """What another process (or the admin's bulk action) does: an UPDATE this one never sees."""
    VirtualKey.objects.filter(pk=key.pk).update(is_active=False)


def test_a_cached_key_authenticates_without_a_query(django_assert_num_queries):
    key = VirtualKeyFactory()
    with django_assert_num_queries(1):
        assert authenticate_virtual_key(key.raw).pk == key.pk
    with django_assert_num_queries(0):
        assert authenticate_virtual_key(key.raw).pk == key.pk


def test_a_poll_with_a_cached_key_runs_one_query(api_client, django_assert_num_queries):
    key = VirtualKeyFactory()
    job = AsyncJobFactory(virtual_key=key)
    api_client.get(unknown_job_url(), headers=bearer(key.raw))
    with django_assert_num_queries(1):
        response = api_client.get(f"/v1/async/completions/{job.id}", headers=bearer(key.raw))
    assert response.status_code == 202


def test_a_key_deactivated_elsewhere_is_refused_once_the_cache_time_has_passed(api_client, clock):
    key = VirtualKeyFactory()
    assert api_client.get(unknown_job_url(), headers=bearer(key.raw)).status_code == 404
    deactivate_elsewhere(key)
    clock.advance(TTL - 0.1)
    assert api_client.get(unknown_job_url(), headers=bearer(key.raw)).status_code == 404
    clock.advance(0.2)
    response = api_client.get(unknown_job_url(), headers=bearer(key.raw))
    assert_unauthorized(response, code="inactive_api_key")


def test_a_key_deleted_elsewhere_is_refused_once_the_cache_time_has_passed(api_client, clock):
    key = VirtualKeyFactory()
    authenticate_virtual_key(key.raw)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {VirtualKey._meta.db_table} WHERE id = %s", [key.pk])  # noqa: S608
    clock.advance(TTL + 0.1)
    response = api_client.get(unknown_job_url(), headers=bearer(key.raw))
    assert_unauthorized(response, code="invalid_api_key")


def test_a_key_saved_in_this_process_is_read_again_at_once(api_client):
    key = VirtualKeyFactory()
    authenticate_virtual_key(key.raw)
    key.is_active = False
    key.save()
    assert_unauthorized(
        api_client.get(unknown_job_url(), headers=bearer(key.raw)), code="inactive_api_key"
    )


def test_a_key_deleted_in_this_process_is_refused_at_once(api_client):
    key = VirtualKeyFactory()
    authenticate_virtual_key(key.raw)
    VirtualKey.objects.filter(pk=key.pk).delete()
    assert_unauthorized(
        api_client.get(unknown_job_url(), headers=bearer(key.raw)), code="invalid_api_key"
    )


def test_new_allowed_models_apply_once_the_cache_time_has_passed(api_client, clock):
    key = VirtualKeyFactory()
    body = {"model": "openai/gpt-test", "prompt": "hi"}
    authenticate_virtual_key(key.raw)
    VirtualKey.objects.filter(pk=key.pk).update(allowed_models=["anthropic/*"])
    clock.advance(TTL + 0.1)
    response = api_client.post(
        "/v1/async/completions", body, format="json", headers=bearer(key.raw)
    )
    assert_error_shape(response, 403, code="model_not_allowed")


def test_an_expiry_date_is_checked_on_every_request_even_when_cached(api_client, monkeypatch):
    key = VirtualKeyFactory(expires_at=timezone.now() + timedelta(hours=1))
    assert api_client.get(unknown_job_url(), headers=bearer(key.raw)).status_code == 404
    later = timezone.now() + timedelta(hours=2)
    monkeypatch.setattr("gateway.access.models.timezone.now", lambda: later)
    assert_unauthorized(
        api_client.get(unknown_job_url(), headers=bearer(key.raw)), code="inactive_api_key"
    )


def test_a_jwt_for_a_key_deactivated_elsewhere_is_refused_once_the_cache_time_has_passed(
    api_client, clock
):
    key = VirtualKeyFactory()
    token = issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk)
    assert api_client.get(unknown_job_url(), headers=bearer(token)).status_code == 404
    deactivate_elsewhere(key)
    assert api_client.get(unknown_job_url(), headers=bearer(token)).status_code == 404
    clock.advance(TTL + 0.1)
    assert_unauthorized(api_client.get(unknown_job_url(), headers=bearer(token)))


def test_zero_seconds_reads_the_key_on_every_request(settings, django_assert_num_queries):
    settings.GATEWAY_KEY_CACHE_SECONDS = 0
    key = VirtualKeyFactory()
    for _ in range(2):
        with django_assert_num_queries(1):
            authenticate_virtual_key(key.raw)
    deactivate_elsewhere(key)
    with pytest.raises(AuthenticationRequired):
        authenticate_virtual_key(key.raw)


def test_the_cache_is_keyed_by_hmac_and_id_never_by_the_raw_key():
    key = VirtualKeyFactory()
    authenticate_virtual_key(key.raw)
    cache_keys = set(authentication.key_cache._entries)
    assert cache_keys == {("hash", key.key_hash), ("pk", key.pk)}
    assert all(key.raw not in str(cache_key) for cache_key in cache_keys)


def test_unknown_keys_are_not_remembered(django_assert_num_queries):
    for _ in range(2):
        with django_assert_num_queries(1), pytest.raises(AuthenticationRequired):
            authenticate_virtual_key("sk-bf-not-a-real-key")
    assert len(authentication.key_cache._entries) == 0


def test_a_full_cache_drops_expired_entries_first_then_the_least_recently_used(clock):
    cache = KeyCache(clock=clock, max_entries=4)
    first, second, third = VirtualKeyFactory(), VirtualKeyFactory(), VirtualKeyFactory()
    cache.get(("hash", first.key_hash), lambda: first)
    clock.advance(TTL + 1)
    cache.get(("hash", second.key_hash), lambda: second)
    cache.get(("hash", third.key_hash), lambda: third)
    assert set(cache._entries) == {
        ("hash", second.key_hash),
        ("pk", second.pk),
        ("hash", third.key_hash),
        ("pk", third.pk),
    }
    cache.get(("hash", third.key_hash), lambda: pytest.fail("third is cached"))  # used last
    fourth = VirtualKeyFactory()
    cache.get(("hash", fourth.key_hash), lambda: fourth)
    assert len(cache._entries) == 4
    assert ("hash", second.key_hash) not in cache._entries
    assert {("hash", third.key_hash), ("hash", fourth.key_hash)} <= set(cache._entries)
