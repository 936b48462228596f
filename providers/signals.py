from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from providers import pricing, registry
from providers.models import ModelPrice, ProviderConfig, ProviderKey


@receiver([post_save, post_delete], sender=ProviderConfig)
@receiver([post_save, post_delete], sender=ProviderKey)
def _forget_cached_providers(**kwargs: Any) -> None:
    registry.clear_cache()


@receiver([post_save, post_delete], sender=ModelPrice)
def _forget_cached_prices(**kwargs: Any) -> None:
    pricing.clear_cache()
