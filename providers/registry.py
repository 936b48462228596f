"""Which providers exist and how to reach them.

Providers come from the environment (``OPENAI_API_KEY`` + ``OPENAI_BASE_URL``,
``ANTHROPIC_API_KEY``, and the OpenAI-compatible services below) and from the admin, which wins
for the same name. The merged table is cached per process for GATEWAY_PROVIDER_CACHE_SECONDS.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from dataclasses import dataclass, field
from typing import Any

from cachetools import TLRUCache, cached
from django.conf import settings

from providers.base import Credentials
from providers.logsafe import logsafe

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnvProvider:
    protocol: str
    default_base_url: str


# name -> how it is configured from NAME_API_KEY and NAME_BASE_URL
ENV_PROVIDERS: dict[str, EnvProvider] = {
    "openai": EnvProvider("openai", "https://api.openai.com/v1"),
    "anthropic": EnvProvider("anthropic", "https://api.anthropic.com"),
    "groq": EnvProvider("openai", "https://api.groq.com/openai/v1"),
    "together": EnvProvider("openai", "https://api.together.xyz/v1"),
    "openrouter": EnvProvider("openai", "https://openrouter.ai/api/v1"),
    "mistral": EnvProvider("openai", "https://api.mistral.ai/v1"),
    "deepseek": EnvProvider("openai", "https://api.deepseek.com/v1"),
    "fireworks": EnvProvider("openai", "https://api.fireworks.ai/inference/v1"),
    "ollama": EnvProvider("openai", "http://127.0.0.1:11434/v1"),
    "vllm": EnvProvider("openai", "http://127.0.0.1:8000/v1"),
}


@dataclass(frozen=True)
class ProviderEntry:
    name: str
    protocol: str
    base_url: str
    keys: tuple[tuple[str, int], ...] = field(repr=False)  # (api key, weight); empty: keyless

    def choose_credentials(self) -> Credentials:
        api_key = ""
        if self.keys:
            values, weights = zip(*self.keys, strict=True)
            api_key = random.choices(values, weights=weights)[0]
        return Credentials(self.name, self.protocol, self.base_url, api_key)

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(key for key, _ in self.keys if key)


def environment_providers() -> dict[str, ProviderEntry]:
    """The providers the environment configures, read now (an admin provider may override one)."""
    return _from_environment()


def _from_environment() -> dict[str, ProviderEntry]:
    entries = {}
    for name, spec in ENV_PROVIDERS.items():
        api_key = os.environ.get(f"{name.upper()}_API_KEY", "").strip()
        base_url = os.environ.get(f"{name.upper()}_BASE_URL", "").strip()
        if not api_key and not base_url:
            continue
        keys = ((api_key, 1),) if api_key else ()
        entries[name] = ProviderEntry(name, spec.protocol, base_url or spec.default_base_url, keys)
    return entries


def _from_database() -> dict[str, ProviderEntry]:
    from providers.models import ProviderConfig

    entries = {}
    for config in ProviderConfig.objects.filter(is_active=True).prefetch_related("keys"):
        keys = []
        for provider_key in config.keys.all():
            if not provider_key.is_active:
                continue
            raw = provider_key.get_key()
            if raw is None:
                logger.error(
                    "provider key %s of %s cannot be decrypted with the configured "
                    "encryption key; it is skipped",
                    provider_key.pk,
                    logsafe(config.name),
                )
                continue
            keys.append((raw, provider_key.weight))
        entries[config.name] = ProviderEntry(
            config.name, config.protocol, config.base_url, tuple(keys)
        )
    return entries


# One entry, the merged table, kept for the setting as it is when the table is read (at 0, it is
# read on every use).
_table_cache: TLRUCache[Any, dict[str, ProviderEntry]] = TLRUCache(
    maxsize=1, ttu=lambda _key, _table, now: now + settings.GATEWAY_PROVIDER_CACHE_SECONDS
)


@cached(_table_cache, lock=threading.Lock())
def providers() -> dict[str, ProviderEntry]:
    return {**_from_environment(), **_from_database()}


def clear_cache() -> None:
    providers.cache_clear()


def get_provider(name: str) -> ProviderEntry | None:
    return providers().get(name)
