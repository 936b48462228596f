"""Writes to providers that carry a security rule of their own."""

from __future__ import annotations

from collections.abc import Collection

from providers.models import ProviderConfig, ProviderKey

# A stored key was entered for one upstream: sending it anywhere else needs it entered again.
ENDPOINT_FIELDS = frozenset({"base_url", "protocol"})


def drop_stored_keys(provider: ProviderConfig, *, keep: Collection[int] = ()) -> list[ProviderKey]:
    """Delete the provider's keys but those in ``keep`` (entered just now); return the deleted."""
    dropped = list(provider.keys.exclude(pk__in=keep))
    for key in dropped:
        key.delete()
    return dropped
