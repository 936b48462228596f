"""GET /v1/usage, and the 402 a key whose budget is spent gets at submit."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from gateway.access.budgets import period_start
from gateway.access.models import BudgetPeriod
from gateway.access.tokens import ROLE_ADMIN, ROLE_VIRTUAL_KEY, issue_token
from jobs.charges import Charge, record_charges
from jobs.models import AsyncJob, IdempotencyKey, KeyCounters
from jobs.serializers import rfc3339
from jobs.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.factories import VirtualKeyFactory
from tests.helpers import SUBMIT_URL, VALID_BODY, assert_error_shape, bearer

pytestmark = pytest.mark.django_db

URL = "/v1/usage"


def client_for(token: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api


@pytest.fixture
def admin_client() -> APIClient:
    return client_for(issue_token(role=ROLE_ADMIN))


def spend(key: Any, cost: str, model: str = "openai/gpt-4o", **fields: Any) -> None:
    values: dict[str, Any] = {
        "virtual_key_id": key.pk,
        "model": model,
        "cost_usd": Decimal(cost),
        "priced": True,
        "prompt_tokens": 100,
        "completion_tokens": 20,
    }
    record_charges(timezone.now(), [Charge(**(values | fields))])


def test_a_key_reads_its_spend_in_its_budget_period_in_all_and_per_model():
    key = VirtualKeyFactory(budget_usd=Decimal("25.5"), budget_period=BudgetPeriod.WEEKLY)
    spend(key, "0.00125")
    spend(key, "0.5", model="anthropic/claude-3-5-haiku", prompt_tokens=7, completion_tokens=3)
    spend(key, "0", model="vllm/mine", priced=False, prompt_tokens=1, completion_tokens=1)

    response = client_for(key.raw).get(URL)

    assert response.status_code == 200
    start = period_start("weekly", timezone.now(), key.created_at)
    assert response.json() == {
        "object": "usage",
        "key": key.name,
        "budget_usd": "25.5",
        "budget_period": "weekly",
        "period_start": rfc3339(start),
        "spend_usd": "0.50125",
        "requests": 3,
        "prompt_tokens": 108,
        "completion_tokens": 24,
        "unpriced_requests": 1,
        "models": [
            {
                "model": "anthropic/claude-3-5-haiku",
                "spend_usd": "0.5",
                "requests": 1,
                "prompt_tokens": 7,
                "completion_tokens": 3,
                "unpriced_requests": 0,
            },
            {
                "model": "openai/gpt-4o",
                "spend_usd": "0.00125",
                "requests": 1,
                "prompt_tokens": 100,
                "completion_tokens": 20,
                "unpriced_requests": 0,
            },
            {
                "model": "vllm/mine",
                "spend_usd": "0",
                "requests": 1,
                "prompt_tokens": 1,
                "completion_tokens": 1,
                "unpriced_requests": 1,
            },
        ],
    }


def test_a_key_without_a_budget_reads_its_total_since_it_was_created():
    key = VirtualKeyFactory()
    body = client_for(key.raw).get(URL).json()
    assert (body["budget_usd"], body["budget_period"]) == (None, "total")
    assert body["period_start"] == rfc3339(key.created_at)
    assert (body["spend_usd"], body["requests"], body["models"]) == ("0", 0, [])


def test_a_keys_jwt_reads_that_keys_usage():
    key = VirtualKeyFactory()
    spend(key, "1")
    token = issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk)
    assert client_for(token).get(URL).json()["spend_usd"] == "1"


def test_a_key_may_name_itself():
    key = VirtualKeyFactory()
    assert client_for(key.raw).get(URL, {"key": key.name}).json()["key"] == key.name


def test_a_key_naming_another_key_gets_the_unknown_keys_404():
    key, other = VirtualKeyFactory(), VirtualKeyFactory()
    response = client_for(key.raw).get(URL, {"key": other.name})
    body = assert_error_shape(response, 404, code="not_found", param="key")
    assert other.name not in response.content.decode()
    unknown = client_for(key.raw).get(URL, {"key": "no-such-key"})
    assert assert_error_shape(unknown, 404)["error"]["message"] == body["error"]["message"]


def test_an_admin_token_reads_any_key_by_name(admin_client):
    key = VirtualKeyFactory(budget_usd=Decimal(3), budget_period=BudgetPeriod.DAILY)
    spend(key, "2.75")
    body = admin_client.get(URL, {"key": key.name}).json()
    assert (body["key"], body["spend_usd"], body["budget_usd"]) == (key.name, "2.75", "3")


def test_an_admin_token_naming_an_unknown_key_is_404(admin_client):
    assert_error_shape(admin_client.get(URL, {"key": "no-such-key"}), 404, code="not_found")


def test_an_admin_token_must_name_a_key(admin_client):
    assert_error_shape(admin_client.get(URL), 400, code="invalid_parameter", param="key")
    assert_error_shape(admin_client.get(URL, {"key": ""}), 400, param="key")


@pytest.mark.parametrize(
    ("query", "param"), [({"limit": "5"}, "limit"), ({"key": ["a", "b"]}, "key")]
)
def test_an_unknown_or_repeated_parameter_is_400_naming_it(query, param):
    key = VirtualKeyFactory(name="a")
    assert_error_shape(client_for(key.raw).get(URL, query), 400, param=param)


def test_usage_needs_a_credential(api_client):
    assert_error_shape(api_client.get(URL), 401, code="missing_api_key")
    assert_error_shape(api_client.get(URL, **bearer("sk-bf-unknown")), 401)


def test_usage_takes_get_only():
    key = VirtualKeyFactory()
    assert_error_shape(client_for(key.raw).post(URL, {}, format="json"), 405)


# --- the budget at submit ----------------------------------------------------------------------


def test_a_submit_under_the_budget_is_accepted():
    key = VirtualKeyFactory(budget_usd=Decimal(1), budget_period=BudgetPeriod.MONTHLY)
    spend(key, "0.9999")
    assert client_for(key.raw).post(SUBMIT_URL, VALID_BODY, format="json").status_code == 202


def test_a_submit_once_the_budget_is_spent_is_402_and_makes_no_job():
    key = VirtualKeyFactory(budget_usd=Decimal(1), budget_period=BudgetPeriod.MONTHLY)
    spend(key, "1")
    WebhookEndpoint.objects.create(name="hook", url="https://example.com/hook")
    response = client_for(key.raw).post(
        SUBMIT_URL,
        VALID_BODY,
        format="json",
        HTTP_IDEMPOTENCY_KEY="once",
        HTTP_X_BF_ASYNC_WEBHOOK="hook",
    )

    body = assert_error_shape(response, 402, code="budget_exceeded")
    assert body["extra_fields"]["model_requested"] == "openai/gpt-test"
    assert "1 USD" in body["error"]["message"]
    assert not AsyncJob.objects.exists()
    assert not IdempotencyKey.objects.exists()
    assert not WebhookDelivery.objects.exists()


def test_a_spent_budget_does_not_stop_polls_or_other_keys():
    key = VirtualKeyFactory(budget_usd=Decimal(1), budget_period=BudgetPeriod.DAILY)
    other = VirtualKeyFactory(budget_usd=Decimal(1), budget_period=BudgetPeriod.DAILY)
    accepted = client_for(key.raw).post(SUBMIT_URL, VALID_BODY, format="json")
    spend(key, "1.5")

    assert client_for(key.raw).get(accepted["Location"]).status_code == 202
    assert client_for(key.raw).post(SUBMIT_URL, VALID_BODY, format="json").status_code == 402
    assert client_for(other.raw).post(SUBMIT_URL, VALID_BODY, format="json").status_code == 202


def test_a_spent_budget_is_402_before_any_limit_the_key_is_also_at():
    key = VirtualKeyFactory(budget_usd=Decimal(1), budget_period=BudgetPeriod.DAILY, max_pending=1)
    assert client_for(key.raw).post(SUBMIT_URL, VALID_BODY, format="json").status_code == 202
    spend(key, "1")  # now at max_pending and out of budget

    response = client_for(key.raw).post(SUBMIT_URL, VALID_BODY, format="json")

    assert_error_shape(response, 402, code="budget_exceeded")
    assert AsyncJob.objects.count() == 1


def test_a_key_with_only_a_budget_is_counted_so_its_submits_pass_one_gate():
    key = VirtualKeyFactory(budget_usd=Decimal(1), budget_period=BudgetPeriod.MONTHLY)
    accepted = client_for(key.raw).post(SUBMIT_URL, VALID_BODY, format="json")
    assert accepted.status_code == 202
    job = AsyncJob.objects.get()
    assert job.counted
    assert KeyCounters.objects.get(virtual_key=key).pending == 1


def test_an_admin_token_has_no_budget(admin_client):
    assert admin_client.post(SUBMIT_URL, VALID_BODY, format="json").status_code == 202


def test_usage_is_in_the_api_document():
    document = APIClient().get("/openapi.json").json()
    usage = document["paths"]["/v1/usage"]["get"]
    assert {"200", "400", "401", "404"} <= set(usage["responses"])
    submit = document["paths"]["/v1/async/completions"]["post"]
    assert "402" in submit["responses"]
