"""``GET /v1/usage``: a key's spend and usage in its current budget period.

A virtual key reads its own usage (``?key=`` may name only itself: another key's name is the
same 404 as an unknown one, so names are not revealed); an admin token reads any key's, named by
``?key=NAME``. Money is written as decimal strings (``"0.0123"``), exact, never floats.
"""

from __future__ import annotations

from typing import Any

from django.http import QueryDict
from rest_framework import serializers

from gateway.access.budgets import Spend, Usage, money
from gateway.access.models import BudgetPeriod, VirtualKey
from gateway.access.principals import Principal
from gateway.http.errors import InvalidRequest, NotFound
from jobs.serializers import rfc3339

PARAMS = ("key",)


def usage_key(params: QueryDict, principal: Principal) -> VirtualKey:
    """The key whose usage the query asks for, as the caller may see it."""
    for param in params:
        if param not in PARAMS:
            raise InvalidRequest(
                f"Unknown query parameter {param!r}.", param=param, code="unknown_parameter"
            )
    names = params.getlist("key")
    if len(names) > 1:
        raise InvalidRequest("key: give it once.", param="key", code="invalid_parameter")
    name = names[0] if names else None
    own = principal.virtual_key
    if own is not None:
        if name is not None and name != own.name:
            raise _unknown_key()
        return own
    if not name:
        raise InvalidRequest(
            "key: an admin token must name the key whose usage to read (?key=NAME).",
            param="key",
            code="invalid_parameter",
        )
    key = VirtualKey.objects.filter(name=name).first()
    if key is None:
        raise _unknown_key()
    return key


def _unknown_key() -> NotFound:
    return NotFound("No such virtual key.", param="key")


class SpendSerializer(serializers.Serializer):
    spend_usd = serializers.CharField(help_text="USD, a decimal string.")
    requests = serializers.IntegerField(help_text="Completed jobs charged.")
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    unpriced_requests = serializers.IntegerField(
        help_text="Jobs charged 0 because no price is known for their model."
    )

    @staticmethod
    def render(spend: Spend) -> dict[str, Any]:
        return {
            "spend_usd": money(spend.spend_usd),
            "requests": spend.requests,
            "prompt_tokens": spend.prompt_tokens,
            "completion_tokens": spend.completion_tokens,
            "unpriced_requests": spend.unpriced_requests,
        }


class ModelSpendSerializer(SpendSerializer):
    model = serializers.CharField(help_text='"provider/model" that served the jobs.')

    @staticmethod
    def render_model(model: str, spend: Spend) -> dict[str, Any]:
        return {"model": model, **SpendSerializer.render(spend)}


class UsageSerializer(SpendSerializer):
    object = serializers.ChoiceField(choices=["usage"])
    key = serializers.CharField(help_text="The virtual key's name.")
    budget_usd = serializers.CharField(
        allow_null=True, help_text="USD per period, a decimal string; null: no budget."
    )
    budget_period = serializers.ChoiceField(
        choices=BudgetPeriod.values, help_text="The period reported: `total` without a budget."
    )
    period_start = serializers.DateTimeField(help_text="UTC start of the period reported.")
    models = ModelSpendSerializer(many=True, help_text="The same, per model, by model name.")

    @staticmethod
    def render_usage(usage: Usage) -> dict[str, Any]:
        budget = usage.key.budget_usd
        return {
            "object": "usage",
            "key": usage.key.name,
            "budget_usd": None if budget is None else money(budget),
            "budget_period": usage.period,
            "period_start": rfc3339(usage.period_start),
            **SpendSerializer.render(usage.total),
            "models": [
                ModelSpendSerializer.render_model(model, spend)
                for model, spend in sorted(usage.models.items())
            ],
        }
