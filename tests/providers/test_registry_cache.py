"""The provider table is read once per GATEWAY_PROVIDER_CACHE_SECONDS per process; 0 reads it
on every use."""

from __future__ import annotations

import time
from typing import Any

import pytest

from providers import registry
from providers.models import ProviderConfig

pytestmark = pytest.mark.django_db


def add_provider(name: str) -> None:
    """What another process (or a bulk action) does: a row this process's signals never see."""
    ProviderConfig.objects.bulk_create(
        [ProviderConfig(name=name, base_url=f"https://{name}.example/v1")]
    )


def test_the_table_is_kept_for_the_cache_time(settings: Any, django_assert_num_queries: Any):
    settings.GATEWAY_PROVIDER_CACHE_SECONDS = 3600
    registry.clear_cache()
    assert registry.get_provider("acme") is None
    add_provider("acme")
    with django_assert_num_queries(0):
        assert registry.get_provider("acme") is None  # the table read before the change


def test_the_table_is_read_again_once_the_cache_time_has_passed(settings: Any):
    settings.GATEWAY_PROVIDER_CACHE_SECONDS = 0.05
    registry.clear_cache()
    assert registry.get_provider("acme") is None
    add_provider("acme")
    time.sleep(0.1)
    entry = registry.get_provider("acme")
    assert entry is not None and entry.base_url == "https://acme.example/v1"


def test_zero_seconds_reads_the_table_on_every_use(settings: Any, django_assert_num_queries: Any):
    settings.GATEWAY_PROVIDER_CACHE_SECONDS = 0
    registry.clear_cache()
    assert registry.get_provider("acme") is None
    add_provider("acme")
    assert registry.get_provider("acme") is not None
    with django_assert_num_queries(4):  # the providers and their keys, each time
        registry.providers()
        registry.providers()


def test_a_provider_saved_in_this_process_is_read_at_once(settings: Any):
    settings.GATEWAY_PROVIDER_CACHE_SECONDS = 3600
    registry.clear_cache()
    assert registry.get_provider("acme") is None
    ProviderConfig.objects.create(name="acme", base_url="https://acme.example/v1")
    assert registry.get_provider("acme") is not None
