"""Budget periods, the spend in them, and the 402 a spent budget answers at submit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from gateway.access import budgets
from gateway.access.budgets import BudgetExceeded, key_usage, period_start
from gateway.access.models import BudgetPeriod, KeySpend
from gateway.access.principals import Principal
from jobs.budget import ensure_within_budget
from jobs.charges import Charge, record_charges
from tests.factories import VirtualKeyFactory

CREATED = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
LAST_MS = timedelta(microseconds=1000)  # 23:59:59.999 is this before midnight


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "now", "start"),
    [
        ("daily", "2026-12-07T10:30:00", "2026-12-07T00:00:00"),
        ("daily", "2026-12-06T23:59:59.999", "2026-12-06T00:00:00"),
        ("daily", "2026-12-07T00:00:00", "2026-12-07T00:00:00"),
        # 2026-12-07 is a Monday: the ISO week starts there.
        ("weekly", "2026-12-06T23:59:59.999", "2026-11-30T00:00:00"),
        ("weekly", "2026-12-07T00:00:00", "2026-12-07T00:00:00"),
        ("weekly", "2026-12-13T23:59:59.999", "2026-12-07T00:00:00"),
        ("weekly", "2027-01-01T12:00:00", "2026-12-28T00:00:00"),
        ("monthly", "2026-11-30T23:59:59.999", "2026-11-01T00:00:00"),
        ("monthly", "2026-12-01T00:00:00", "2026-12-01T00:00:00"),
        ("monthly", "2026-12-31T23:59:59.999", "2026-12-01T00:00:00"),
        ("monthly", "2027-01-01T00:00:00", "2027-01-01T00:00:00"),
        ("total", "2027-01-01T00:00:00", "2026-03-14T15:09:26"),
    ],
)
def test_a_period_starts_at_its_utc_calendar_boundary(period, now, start):
    assert period_start(period, at(now), CREATED) == at(start)


def test_a_period_is_read_in_utc_whatever_the_clock_zone():
    sydney = timezone.get_fixed_timezone(11 * 60)
    monday_morning_in_sydney = datetime(2026, 12, 7, 9, 0, tzinfo=sydney)  # Sunday 22:00 UTC
    assert period_start("daily", monday_morning_in_sydney, CREATED) == at("2026-12-06T00:00:00")
    assert period_start("weekly", monday_morning_in_sydney, CREATED) == at("2026-11-30T00:00:00")


def test_an_unknown_period_is_an_error():
    with pytest.raises(ValueError, match="fortnightly"):
        period_start("fortnightly", at("2026-12-07T00:00:00"), CREATED)


def charge(key: Any, cost: str, model: str = "openai/gpt-4o", **fields: Any) -> Charge:
    values: dict[str, Any] = {
        "virtual_key_id": key.pk,
        "model": model,
        "cost_usd": Decimal(cost),
        "priced": True,
        "prompt_tokens": 10,
        "completion_tokens": 5,
    }
    return Charge(**(values | fields))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("period", "boundary"),
    [
        ("daily", "2026-12-07T00:00:00"),
        ("weekly", "2026-12-07T00:00:00"),  # a Monday
        ("monthly", "2026-12-01T00:00:00"),
    ],
)
def test_a_job_finished_a_millisecond_before_the_boundary_counts_in_the_period_before(
    period, boundary
):
    key = VirtualKeyFactory(budget_usd=Decimal(10), budget_period=period)
    record_charges(at(boundary) - LAST_MS, [charge(key, "1.25")])
    before = key_usage(key, now=at(boundary) - LAST_MS)
    record_charges(at(boundary), [charge(key, "0.5")])
    after = key_usage(key, now=at(boundary) + timedelta(hours=1))

    assert before.total.spend_usd == Decimal("1.25")
    assert after.total.spend_usd == Decimal("0.5")
    assert after.period_start == at(boundary)


@pytest.mark.django_db
def test_the_total_period_counts_every_day_since_the_key_was_created():
    key = VirtualKeyFactory(budget_usd=Decimal(10), budget_period=BudgetPeriod.TOTAL)
    for day in ("2026-01-31T23:59:59.999", "2026-06-01T00:00:00", "2026-12-07T08:00:00"):
        record_charges(at(day), [charge(key, "0.1")])

    usage = key_usage(key, now=at("2026-12-07T09:00:00"))

    assert usage.total.spend_usd == Decimal("0.3")
    assert usage.total.requests == 3
    assert usage.period == "total" and usage.period_start == key.created_at


@pytest.mark.django_db
def test_a_key_without_a_budget_reports_its_total():
    key = VirtualKeyFactory()
    record_charges(timezone.now() - timedelta(days=400), [charge(key, "2")])
    usage = key_usage(key)
    assert (usage.period, usage.total.spend_usd) == ("total", Decimal(2))


@pytest.mark.django_db
def test_usage_sums_per_model_and_counts_unpriced_jobs():
    key = VirtualKeyFactory()
    now = timezone.now()
    record_charges(
        now,
        [
            charge(key, "0.0000015", prompt_tokens=3, completion_tokens=1),
            charge(key, "0.0000025", prompt_tokens=7, completion_tokens=2),
            charge(key, "0", model="vllm/mine", priced=False, prompt_tokens=4),
        ],
    )
    usage = key_usage(key)
    assert usage.total.spend_usd == Decimal("0.000004")
    assert (usage.total.requests, usage.total.unpriced_requests) == (3, 1)
    assert (usage.total.prompt_tokens, usage.total.completion_tokens) == (14, 8)
    gpt, mine = usage.models["openai/gpt-4o"], usage.models["vllm/mine"]
    assert (gpt.requests, gpt.spend_usd, gpt.unpriced_requests) == (2, Decimal("0.000004"), 0)
    assert (mine.requests, mine.spend_usd, mine.unpriced_requests) == (1, Decimal(0), 1)


@pytest.mark.django_db
def test_the_budget_is_refused_once_spent_and_not_a_cent_before():
    key = VirtualKeyFactory(budget_usd=Decimal("1.00"), budget_period=BudgetPeriod.DAILY)
    principal = Principal(virtual_key=key)
    record_charges(timezone.now(), [charge(key, "0.9999999999")])
    ensure_within_budget(principal)  # below the budget: allowed

    record_charges(timezone.now(), [charge(key, "0.0000000001")])
    with pytest.raises(BudgetExceeded) as refused:
        ensure_within_budget(principal)
    assert refused.value.status_code == 402
    assert refused.value.code == "budget_exceeded"


@pytest.mark.django_db
def test_yesterdays_spend_does_not_count_against_a_daily_budget():
    key = VirtualKeyFactory(budget_usd=Decimal(1), budget_period=BudgetPeriod.DAILY)
    record_charges(timezone.now() - timedelta(days=1), [charge(key, "5")])
    ensure_within_budget(Principal(virtual_key=key))


@pytest.mark.django_db
def test_a_zero_budget_refuses_every_submit():
    key = VirtualKeyFactory(budget_usd=Decimal(0), budget_period=BudgetPeriod.MONTHLY)
    with pytest.raises(BudgetExceeded):
        ensure_within_budget(Principal(virtual_key=key))


@pytest.mark.django_db
def test_keys_without_a_budget_and_admins_read_nothing(django_assert_num_queries):
    key = VirtualKeyFactory()
    with django_assert_num_queries(0):
        ensure_within_budget(Principal(virtual_key=key))
        ensure_within_budget(Principal(virtual_key=None, is_admin=True))


@pytest.mark.django_db
def test_a_key_with_a_budget_reads_the_ledger_once(django_assert_num_queries):
    key = VirtualKeyFactory(budget_usd=Decimal(5), budget_period=BudgetPeriod.WEEKLY)
    with django_assert_num_queries(1):
        ensure_within_budget(Principal(virtual_key=key))


@pytest.mark.django_db
def test_ledger_rows_go_with_their_key_only():
    key, other = VirtualKeyFactory(), VirtualKeyFactory()
    record_charges(timezone.now(), [charge(key, "1"), charge(other, "2")])
    key.delete()
    assert list(KeySpend.objects.values_list("virtual_key", flat=True)) == [other.pk]


@pytest.mark.parametrize(
    ("value", "text"),
    [("0E-10", "0"), ("1.5000", "1.5"), ("10", "10"), ("0.0000001230", "0.000000123")],
)
def test_money_is_a_plain_decimal_string(value, text):
    assert budgets.money(Decimal(value)) == text
