"""Prices: an admin's price wins, else the bundled table, else 0 and unpriced."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from genai_prices import Usage, calc_price

from providers import pricing
from providers.models import ModelPrice, ProviderConfig
from providers.pricing import price_usage

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_prices() -> Any:
    pricing.clear_cache()
    yield
    pricing.clear_cache()


def library_price(provider_id: str, model: str, prompt: int, completion: int) -> Decimal:
    usage = Usage(input_tokens=prompt, output_tokens=completion)
    return Decimal(calc_price(usage, model_ref=model, provider_id=provider_id).total_price)


def test_a_known_model_is_priced_from_the_bundled_table():
    price = price_usage("openai", "gpt-4o", 1000, 500)
    assert price.priced
    assert price.cost_usd > 0
    assert price.cost_usd == library_price("openai", "gpt-4o", 1000, 500)


def test_more_tokens_cost_more():
    assert price_usage("anthropic", "claude-3-5-haiku-latest", 2000, 10).cost_usd > (
        price_usage("anthropic", "claude-3-5-haiku-latest", 1000, 10).cost_usd
    )


def test_an_unknown_model_costs_nothing_and_is_unpriced():
    price = price_usage("openai", "gpt-never-released", 1000, 500)
    assert (price.cost_usd, price.priced) == (Decimal(0), False)


def test_a_provider_the_table_knows_is_priced_under_its_own_name(monkeypatch):
    monkeypatch.setenv("GROQ_API_KEY", "gsk-test")
    price = price_usage("groq", "llama-3.3-70b-versatile", 1000, 1000)
    assert price.priced
    assert price.cost_usd == library_price("groq", "llama-3.3-70b-versatile", 1000, 1000)


def test_a_provider_of_our_own_is_priced_as_its_protocols_provider():
    ProviderConfig.objects.create(name="inhouse", protocol="openai", base_url="http://x/v1")
    ProviderConfig.objects.create(name="claude-proxy", protocol="anthropic", base_url="http://y")

    assert price_usage("inhouse", "gpt-4o", 100, 100).cost_usd == library_price(
        "openai", "gpt-4o", 100, 100
    )
    assert price_usage("claude-proxy", "claude-3-5-haiku-latest", 100, 100).priced


def test_a_provider_nobody_configured_is_unpriced():
    assert not price_usage("nowhere", "gpt-4o", 100, 100).priced


def test_an_admin_price_wins_over_the_table_and_is_exact():
    ModelPrice.objects.create(
        provider="openai",
        model="gpt-4o",
        input_per_million=Decimal("0.15"),
        output_per_million=Decimal("0.6"),
    )
    price = price_usage("openai", "gpt-4o", 1234, 567)
    # 1234 * 0.15 / 1e6 + 567 * 0.6 / 1e6, in decimal arithmetic
    assert price.cost_usd == Decimal("0.0001851") + Decimal("0.0003402")
    assert price.priced


def test_an_admin_price_makes_an_unknown_model_priced():
    ModelPrice.objects.create(
        provider="vllm", model="mine", input_per_million=1, output_per_million=2
    )
    assert price_usage("vllm", "mine", 1_000_000, 500_000) == pricing.Price(Decimal(2), True)


def test_a_changed_admin_price_applies_at_once_in_this_process():
    override = ModelPrice.objects.create(
        provider="openai", model="gpt-4o", input_per_million=1, output_per_million=1
    )
    assert price_usage("openai", "gpt-4o", 1_000_000, 0).cost_usd == 1
    override.input_per_million = Decimal(3)
    override.save()
    assert price_usage("openai", "gpt-4o", 1_000_000, 0).cost_usd == 3
    override.delete()
    assert price_usage("openai", "gpt-4o", 1_000_000, 0).cost_usd == library_price(
        "openai", "gpt-4o", 1_000_000, 0
    )
