"""What a provider's model costs: an admin's price (``ModelPrice``) if there is one, else the
maintained price table bundled with the ``genai-prices`` library (never fetched at run time).

The library knows providers by its own ids. A provider of ours is looked up under its own name
when the library knows that name (``openai``, ``anthropic``, ``groq``, ``mistral``, …), else
under the provider its protocol speaks for (``openai`` for an OpenAI-compatible server,
``anthropic`` for the Messages API), so a self-hosted server of an OpenAI model is priced as
OpenAI prices it. A model neither knows is charged 0 and reported as unpriced.

Admin prices are kept per process for GATEWAY_PROVIDER_CACHE_SECONDS (at once in the process
that saved one).
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cachetools import TLRUCache, cached
from django.conf import settings
from genai_prices import Usage, calc_price
from genai_prices.data import providers as library_providers

from providers import registry

MILLION = Decimal(1_000_000)
ZERO = Decimal(0)
# Our protocols (providers.models.Protocol) -> the library's provider of that API.
PROTOCOL_PROVIDER_IDS = {"openai": "openai", "anthropic": "anthropic"}
LIBRARY_PROVIDER_IDS = frozenset(provider.id for provider in library_providers)


@dataclass(frozen=True)
class Price:
    cost_usd: Decimal
    priced: bool  # False: no price is known for the model, and it cost 0


def price_usage(provider: str, model: str, prompt_tokens: int, completion_tokens: int) -> Price:
    """The cost of ``prompt_tokens`` in and ``completion_tokens`` out on ``provider/model``."""
    override = admin_prices().get((provider, model))
    if override is not None:
        per_input, per_output = override
        return Price((per_input * prompt_tokens + per_output * completion_tokens) / MILLION, True)
    provider_id = library_provider_id(provider)
    cost = (
        None
        if provider_id is None
        else _library_cost(provider_id, model, prompt_tokens, completion_tokens)
    )
    return Price(ZERO, False) if cost is None else Price(cost, True)


@functools.lru_cache(maxsize=8192)
def _library_cost(
    provider_id: str, model: str, prompt_tokens: int, completion_tokens: int
) -> Decimal | None:
    """The library's price, None when it knows no price for the model. Remembered: one
    calculation costs far more CPU than the rest of a job's finish, and jobs of one kind of
    request often report the same token counts."""
    try:
        calculation = calc_price(
            Usage(input_tokens=prompt_tokens, output_tokens=completion_tokens),
            model_ref=model,
            provider_id=provider_id,
        )
    except LookupError:
        return None
    return Decimal(calculation.total_price)


def library_provider_id(provider: str) -> str | None:
    """The library's id for our provider ``provider``; None when it has none."""
    if provider in LIBRARY_PROVIDER_IDS:
        return provider
    entry = registry.get_provider(provider)
    return PROTOCOL_PROVIDER_IDS.get(entry.protocol) if entry is not None else None


_prices_cache: TLRUCache[Any, dict[tuple[str, str], tuple[Decimal, Decimal]]] = TLRUCache(
    maxsize=1, ttu=lambda _key, _prices, now: now + settings.GATEWAY_PROVIDER_CACHE_SECONDS
)


@cached(_prices_cache, lock=threading.Lock())
def admin_prices() -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
    """(provider, model) -> (USD per million input tokens, per million output tokens)."""
    from providers.models import ModelPrice

    return {
        (price.provider, price.model): (price.input_per_million, price.output_per_million)
        for price in ModelPrice.objects.all()
    }


def clear_cache() -> None:
    admin_prices.cache_clear()
