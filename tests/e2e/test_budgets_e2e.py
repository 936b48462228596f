"""Spend over real HTTP with a real worker: a priced job is charged when it completes, the key's
usage shows it, and the next submit beyond the budget is refused with a 402."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from gateway.access.budgets import money
from providers.pricing import price_usage

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.e2e.conftest import Database, GatewayClient

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("gateway")]


def test_a_priced_job_is_charged_and_a_spent_budget_refuses_the_next_submit(
    api: GatewayClient, make_key: Callable[..., str], e2e_db: Database
) -> None:
    # The smallest budget a key holds; 200 prompt words of gpt-4o cost more than that.
    key = make_key(budget_usd=Decimal("0.0001"), budget_period="total")
    prompt = f"{uuid.uuid4().hex} " + "word " * 199
    body = {"model": "openai/gpt-4o", "prompt": prompt, "max_tokens": 5}

    job_id = api.submit_ok(key, body)
    done = api.poll_until_done(key, job_id).json()
    assert done["status"] == "completed", done
    usage = done["result"]["usage"]
    with e2e_db.access():  # the price as the worker's table holds it
        cost = price_usage("openai", "gpt-4o", usage["prompt_tokens"], usage["completion_tokens"])
    assert cost.priced and cost.cost_usd >= Decimal("0.0001")

    spent = api.get(key, "/v1/usage")
    assert spent.status_code == 200, spent.text
    report = spent.json()
    assert (report["budget_usd"], report["budget_period"]) == ("0.0001", "total")
    assert report["spend_usd"] == money(cost.cost_usd)
    assert (report["requests"], report["unpriced_requests"]) == (1, 0)
    assert (report["prompt_tokens"], report["completion_tokens"]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert [(m["model"], m["spend_usd"]) for m in report["models"]] == [
        ("openai/gpt-4o", money(cost.cost_usd))
    ]

    refused = api.submit(key, body)
    assert refused.status_code == 402, refused.text
    assert refused.json()["error"]["code"] == "budget_exceeded"
    # Nothing was made: the key still has one job.
    listed = api.get(key, "/v1/async/jobs").json()
    assert [job["id"] for job in listed["data"]] == [job_id]
