"""Virtual keys in the admin: created here, shown once, then only their prefix.

A new key's raw value is rendered in the answer to the POST that created it and nowhere else: not
in a message (Django's message cookie is signed, not encrypted), not in the session, not in the
history. Every change, including the bulk actions, is in the admin's history with who and what.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import capfirst

from gateway.access.budgets import Spend, key_usage, money
from gateway.access.keys import display_prefix, generate_key, hash_key
from gateway.access.models import (
    MAX_SHARE,
    MIN_SHARE,
    BudgetPeriod,
    KeySpend,
    RevokedToken,
    VirtualKey,
)

# Where save_model leaves a new key's raw value for response_add, on the request that made it.
_RAW_KEY_ATTRIBUTE = "_gateway_new_virtual_key"


class _BudgetPeriodField(forms.ChoiceField):
    """Left empty, the period is monthly (as the command line's default), not a change."""

    def has_changed(self, initial: Any, data: Any) -> bool:
        return super().has_changed(initial, data or BudgetPeriod.MONTHLY)


class _ShareField(forms.IntegerField):
    """Left empty, the share is 1 (as the command line's default), not a change."""

    def __init__(self) -> None:
        field = VirtualKey._meta.get_field("share")
        super().__init__(
            label="Share",
            required=False,
            min_value=MIN_SHARE,
            max_value=MAX_SHARE,
            initial=field.get_default(),
            help_text=f"{field.help_text} Empty: 1.",
        )

    def clean(self, value: Any) -> int:
        cleaned = super().clean(value)
        return 1 if cleaned is None else cleaned

    def has_changed(self, initial: Any, data: Any) -> bool:
        return super().has_changed(initial, data if data not in self.empty_values else 1)


class VirtualKeyForm(forms.ModelForm):
    allowed_models = forms.JSONField(
        label="Allowed models",
        required=False,
        initial=list,
        help_text='e.g. ["openai/*", "anthropic/claude-3-5-haiku"]',
    )

    class Meta:
        model = VirtualKey
        fields = [
            "name",
            "allowed_models",
            "is_active",
            "expires_at",
            "requests_per_minute",
            "tokens_per_minute",
            "max_pending",
            "share",
            "budget_usd",
            "budget_period",
        ]

    share = _ShareField()
    budget_period = _BudgetPeriodField(
        label="Budget period",
        choices=BudgetPeriod.choices,
        required=False,
        initial=BudgetPeriod.MONTHLY,
        help_text="The UTC period the budget is for (monthly when left empty).",
    )

    def clean_budget_period(self) -> str:
        return self.cleaned_data.get("budget_period") or BudgetPeriod.MONTHLY

    def clean_allowed_models(self) -> list[str]:
        value = self.cleaned_data.get("allowed_models") or []
        if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
            raise forms.ValidationError("A list of provider/model patterns is required.")
        return value


def _spend_line(label: str, spend: Spend) -> str:
    return (
        f"{label}: {money(spend.spend_usd)} USD, {spend.requests} requests, "
        f"{spend.prompt_tokens} prompt + {spend.completion_tokens} completion tokens, "
        f"{spend.unpriced_requests} unpriced"
    )


@admin.register(VirtualKey)
class VirtualKeyAdmin(admin.ModelAdmin):
    form = VirtualKeyForm
    list_display = [
        "name",
        "prefix",
        "is_active",
        "expires_at",
        "requests_per_minute",
        "tokens_per_minute",
        "max_pending",
        "share",
        "budget_usd",
        "budget_period",
        "period_spend",
        "created_at",
    ]
    list_filter = ["is_active", "budget_period"]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix", "created_at", "period_usage"]
    actions = ["deactivate", "activate"]

    @admin.display(description="spend this period (USD)")
    def period_spend(self, obj: VirtualKey) -> str:
        return money(key_usage(obj).total.spend_usd)

    @admin.display(description="usage this period")
    def period_usage(self, obj: VirtualKey) -> str:
        if obj.pk is None:
            return "-"
        usage = key_usage(obj)
        lines = [
            f"{usage.period} period from {usage.period_start:%Y-%m-%d %H:%M} UTC",
            _spend_line("all models", usage.total),
            *(_spend_line(model, spend) for model, spend in sorted(usage.models.items())),
        ]
        ledger = reverse("admin:gateway_keyspend_changelist") + f"?virtual_key__id__exact={obj.pk}"
        return format_html(
            '{}<br><a href="{}">every day in the ledger</a>',
            format_html_join(mark_safe("<br>"), "{}", ((line,) for line in lines)),
            ledger,
        )

    def save_model(self, request: HttpRequest, obj: VirtualKey, form: Any, change: bool) -> None:
        if not change:
            raw = generate_key()
            obj.prefix, obj.key_hash = display_prefix(raw), hash_key(raw)
            setattr(request, _RAW_KEY_ATTRIBUTE, raw)
        super().save_model(request, obj, form, change)

    def response_add(
        self, request: HttpRequest, obj: VirtualKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        raw = getattr(request, _RAW_KEY_ATTRIBUTE, None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        return self._show_new_key_once(request, obj, raw)

    def _show_new_key_once(self, request: HttpRequest, obj: VirtualKey, raw: str) -> HttpResponse:
        """The answer to the POST itself, so the key travels in this one response only."""
        opts = self.opts
        context = {
            **self.admin_site.each_context(request),
            "title": f"Virtual key {obj.name} created",
            "opts": opts,
            "key": obj,
            "raw_key": raw,
            "change_url": reverse(
                f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]
            ),
            "changelist_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
            "add_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_add"),
        }
        response = TemplateResponse(request, "admin/gateway/virtualkey/created.html", context)
        add_never_cache_headers(response)
        return response

    @admin.action(description="Deactivate selected keys")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[VirtualKey]) -> None:
        count = self._set_active(request, queryset, active=False)
        self.message_user(request, f"{count} key(s) deactivated.")

    @admin.action(description="Activate selected keys")
    def activate(self, request: HttpRequest, queryset: QuerySet[VirtualKey]) -> None:
        count = self._set_active(request, queryset, active=True)
        self.message_user(request, f"{count} key(s) activated.")

    def _set_active(
        self, request: HttpRequest, queryset: QuerySet[VirtualKey], *, active: bool
    ) -> int:
        changing = list(queryset.exclude(is_active=active))
        VirtualKey.objects.filter(pk__in=[key.pk for key in changing]).update(is_active=active)
        label = capfirst(str(VirtualKey._meta.get_field("is_active").verbose_name))
        for key in changing:
            self.log_change(request, key, [{"changed": {"fields": [label]}}])
        return len(changing)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows to look at only: nobody adds, changes or deletes them here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(RevokedToken)
class RevokedTokenAdmin(ReadOnlyAdmin):
    """Read-only: tokens are revoked with ``manage.py revoke_jwt``, and a revocation is not
    undone by hand."""

    list_display = ["jti", "issued_before", "revoked_at", "expires_at", "reason"]
    search_fields = ["jti", "reason"]
    date_hierarchy = "revoked_at"


@admin.register(KeySpend)
class KeySpendAdmin(ReadOnlyAdmin):
    """The spend ledger: one row per key, UTC day and served model. Read-only: it is written
    in the transaction that finishes each job, and an edit would make it disagree with them."""

    list_display = [
        "virtual_key",
        "day",
        "model",
        "spend_usd",
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "unpriced_requests",
    ]
    list_filter = ["day", "virtual_key"]
    list_select_related = ["virtual_key"]
    search_fields = ["virtual_key__name", "model"]
    date_hierarchy = "day"
