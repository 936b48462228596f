"""Budgets and prices from the command line and in the admin."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from gateway.access.keys import hash_key
from gateway.access.models import BudgetPeriod, KeySpend, VirtualKey
from jobs.charges import Charge, record_charges
from providers.models import ModelPrice
from tests.factories import VirtualKeyFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def run(command: str, *args: str) -> str:
    out = StringIO()
    call_command(command, *args, stdout=out, stderr=StringIO())
    return out.getvalue().strip().splitlines()[-1]


# --- create_virtual_key --budget ---------------------------------------------------------------


@pytest.mark.parametrize("period", BudgetPeriod.values)
def test_create_virtual_key_stores_a_budget_and_its_period(period):
    raw = run("create_virtual_key", "--name", "team", "--budget", "12.5", "--budget-period", period)
    key = VirtualKey.objects.get(key_hash=hash_key(raw))
    assert (key.budget_usd, key.budget_period) == (Decimal("12.5"), period)


def test_a_budget_without_a_period_is_monthly():
    raw = run("create_virtual_key", "--name", "team", "--budget", "3")
    key = VirtualKey.objects.get(key_hash=hash_key(raw))
    assert (key.budget_usd, key.budget_period) == (Decimal(3), "monthly")


def test_a_key_created_without_a_budget_has_none():
    raw = run("create_virtual_key", "--name", "team")
    assert VirtualKey.objects.get(key_hash=hash_key(raw)).budget_usd is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget-period", "daily"], "--budget-period needs --budget"),
        (["--budget", "-1"], "--budget must be"),
        (["--budget", "ten"], "--budget must be"),
        (["--budget", "NaN"], "--budget must be"),
        (["--budget", "1.00001"], "--budget must be"),
        (["--budget", "1e12"], "--budget must be"),
        (["--budget", "5", "--budget-period", "hourly"], "invalid choice"),
    ],
)
def test_bad_budget_flags_are_refused_and_make_no_key(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("create_virtual_key", "--name", "team", *args, stdout=StringIO())
    assert not VirtualKey.objects.exists()


# --- set_model_price ----------------------------------------------------------------------------


def test_set_model_price_stores_and_then_replaces_a_price():
    run(
        "set_model_price",
        "openai/gpt-4o",
        "--input-per-million",
        "2.5",
        "--output-per-million",
        "10",
    )
    run("set_model_price", "openai/gpt-4o", "--input-per-million", "1", "--output-per-million", "4")
    price = ModelPrice.objects.get()
    assert (price.provider, price.model) == ("openai", "gpt-4o")
    assert (price.input_per_million, price.output_per_million) == (Decimal(1), Decimal(4))


def test_set_model_price_splits_at_the_first_slash():
    run(
        "set_model_price",
        "openrouter/meta/llama-3",
        "--input-per-million",
        "0",
        "--output-per-million",
        "0.5",
    )
    assert ModelPrice.objects.filter(provider="openrouter", model="meta/llama-3").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["gpt-4o", "--input-per-million", "1", "--output-per-million", "1"], "provider/model"),
        (["openai/", "--input-per-million", "1", "--output-per-million", "1"], "provider/model"),
        (["openai/x", "--input-per-million", "-1", "--output-per-million", "1"], "input"),
        (["openai/x", "--input-per-million", "1", "--output-per-million", "inf"], "output"),
        (["openai/x", "--input-per-million", "0.0000001", "--output-per-million", "1"], "input"),
        (["openai/x", "--input-per-million", "1"], "output-per-million"),
    ],
)
def test_set_model_price_refuses_bad_input(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("set_model_price", *args, stdout=StringIO())
    assert not ModelPrice.objects.exists()


# --- the admin ----------------------------------------------------------------------------------


def key_form(**fields: Any) -> dict[str, Any]:
    return {
        "name": "budgeted",
        "allowed_models": "[]",
        "is_active": "on",
        "expires_at_0": "",
        "expires_at_1": "",
        "budget_usd": "",
        "budget_period": "",
    } | fields


def test_the_admin_sets_a_budget_on_a_new_and_an_existing_key(admin_client):
    response = admin_client.post(
        reverse("admin:gateway_virtualkey_add"),
        key_form(budget_usd="7.25", budget_period="weekly"),
    )
    assert response.status_code == 200  # the page that shows the new key once
    key = VirtualKey.objects.get(name="budgeted")
    assert (key.budget_usd, key.budget_period) == (Decimal("7.25"), "weekly")

    change = reverse("admin:gateway_virtualkey_change", args=[key.pk])
    response = admin_client.post(change, key_form(budget_usd="", budget_period="daily"))
    assert response.status_code == 302
    key.refresh_from_db()
    assert (key.budget_usd, key.budget_period) == (None, "daily")


def test_the_admin_refuses_a_negative_budget(admin_client):
    response = admin_client.post(reverse("admin:gateway_virtualkey_add"), key_form(budget_usd="-1"))
    assert response.status_code == 200
    assert "budget_usd" in response.context["adminform"].form.errors
    assert not VirtualKey.objects.exists()


def test_the_admin_shows_a_keys_spend_in_the_list_and_its_usage_per_model(admin_client):
    key = VirtualKeyFactory(budget_usd=Decimal(5), budget_period=BudgetPeriod.MONTHLY)
    charge = Charge(key.pk, "openai/gpt-4o", Decimal("1.125"), True, 300, 40)
    record_charges(timezone.now(), [charge, charge])

    listing = admin_client.get(reverse("admin:gateway_virtualkey_changelist")).content.decode()
    assert "2.25" in listing

    page = admin_client.get(reverse("admin:gateway_virtualkey_change", args=[key.pk]))
    text = page.content.decode()
    assert "monthly period from" in text
    assert "openai/gpt-4o: 2.25 USD, 2 requests, 600 prompt + 80 completion tokens" in text


def test_the_ledger_is_browsable_and_read_only(admin_client):
    key = VirtualKeyFactory(name="ledgered")
    record_charges(timezone.now(), [Charge(key.pk, "openai/gpt-4o", Decimal("0.5"), True, 1, 1)])
    row = KeySpend.objects.get()

    listing = admin_client.get(reverse("admin:gateway_keyspend_changelist"), {"q": "ledgered"})
    assert listing.status_code == 200
    assert list(listing.context["cl"].result_list) == [row]
    assert admin_client.get(reverse("admin:gateway_keyspend_add")).status_code == 403
    change = reverse("admin:gateway_keyspend_change", args=[row.pk])
    assert admin_client.post(change, {"spend_usd": "0"}).status_code == 403
    row.refresh_from_db()
    assert row.spend_usd == Decimal("0.5")


def test_the_admin_sets_a_model_price(admin_client):
    response = admin_client.post(
        reverse("admin:providers_modelprice_add"),
        {
            "provider": "openai",
            "model": "gpt-4o",
            "input_per_million": "2.5",
            "output_per_million": "10",
        },
    )
    assert response.status_code == 302
    price = ModelPrice.objects.get()
    assert (price.input_per_million, price.output_per_million) == (Decimal("2.5"), Decimal(10))
