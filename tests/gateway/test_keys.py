from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from gateway.access.keys import KEY_PREFIX, display_prefix, generate_key, hash_key
from gateway.access.models import VirtualKey
from tests.factories import VirtualKeyFactory


def _stored_values(key: VirtualKey) -> list[str]:
    """Every column of the key's row as it is in the database, as text."""
    row: dict[str, Any] = VirtualKey.objects.filter(pk=key.pk).values().get()
    return [str(value) for value in row.values()]


def test_generated_keys_start_with_sk_bf():
    assert generate_key().startswith("sk-bf-")
    assert KEY_PREFIX == "sk-bf-"


def test_generated_keys_are_unique_and_long_enough_to_be_unguessable():
    keys = {generate_key() for _ in range(1000)}
    assert len(keys) == 1000
    assert all(len(k) >= len(KEY_PREFIX) + 40 for k in keys)


def test_hash_is_deterministic_and_differs_between_keys():
    raw = generate_key()
    assert hash_key(raw) == hash_key(raw)
    assert hash_key(raw) != hash_key(generate_key())
    assert len(hash_key(raw)) == 64


def test_hash_is_keyed_by_secret_key(settings):
    raw = generate_key()
    before = hash_key(raw)
    settings.SECRET_KEY = "another-secret-key-for-this-test-only"
    assert hash_key(raw) != before


def test_display_prefix_is_short_and_reveals_only_the_start_of_the_key():
    raw = generate_key()
    prefix = display_prefix(raw)
    assert raw.startswith(prefix)
    assert prefix.startswith("sk-bf-")
    assert len(prefix) <= 10


@pytest.mark.django_db
def test_create_with_key_stores_only_the_hmac_and_a_short_prefix():
    key, raw = VirtualKey.create_with_key(name="billing")
    key.refresh_from_db()
    assert key.key_hash == hash_key(raw)
    assert key.prefix == display_prefix(raw)
    assert all(raw not in value for value in _stored_values(key))


@pytest.mark.django_db
def test_factory_key_row_never_contains_the_raw_key(key):
    assert all(key.raw not in value for value in _stored_values(key))
    assert VirtualKey.objects.get(key_hash=hash_key(key.raw)).pk == key.pk


@pytest.mark.django_db
def test_key_without_patterns_allows_any_model():
    key = VirtualKeyFactory(allowed_models=[])
    assert key.allows("openai/gpt-4o")
    assert key.allows("anthropic/claude-3-5-haiku")


@pytest.mark.django_db
def test_key_with_wildcard_allows_only_that_provider():
    key = VirtualKeyFactory(allowed_models=["openai/*"])
    assert key.allows("openai/gpt-4o")
    assert not key.allows("anthropic/claude-3-5-haiku")
    assert not key.allows("openai-evil/gpt-4o")


@pytest.mark.django_db
def test_key_with_exact_pattern_allows_only_that_model():
    key = VirtualKeyFactory(allowed_models=["anthropic/claude-3-5-haiku"])
    assert key.allows("anthropic/claude-3-5-haiku")
    assert not key.allows("anthropic/claude-3-5-sonnet")
    assert not key.allows("anthropic/claude-3-5-haiku-latest")


@pytest.mark.django_db
def test_key_patterns_are_case_sensitive():
    key = VirtualKeyFactory(allowed_models=["openai/*"])
    assert not key.allows("OpenAI/gpt-4o")


@pytest.mark.django_db
def test_key_with_several_patterns_allows_any_of_them():
    key = VirtualKeyFactory(allowed_models=["openai/gpt-4o*", "openrouter/*"])
    assert key.allows("openai/gpt-4o-mini")
    assert key.allows("openrouter/meta/llama-3")
    assert not key.allows("openai/gpt-3.5-turbo-instruct")


@pytest.mark.django_db
def test_active_key_without_expiry_is_usable():
    assert VirtualKeyFactory().is_usable


@pytest.mark.django_db
def test_inactive_key_is_not_usable():
    assert not VirtualKeyFactory(is_active=False).is_usable


@pytest.mark.django_db
def test_expired_key_is_not_usable():
    key = VirtualKeyFactory(expires_at=timezone.now() - timedelta(seconds=1))
    assert not key.is_usable


@pytest.mark.django_db
def test_key_expiring_in_the_future_is_usable():
    assert VirtualKeyFactory(expires_at=timezone.now() + timedelta(days=1)).is_usable


def test_the_hash_is_hmac_sha256_under_the_secret_keys_pepper(settings):
    # Stored hashes must stay valid: the formula is pinned here.
    raw = generate_key()
    for secret in ("first-secret", "second-secret"):
        settings.SECRET_KEY = secret
        pepper = hashlib.sha256(b"gateway-virtual-key:" + secret.encode()).digest()
        expected = hmac.new(pepper, raw.encode(), hashlib.sha256).hexdigest()
        assert hash_key(raw) == expected
