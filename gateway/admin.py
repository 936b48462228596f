from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from gateway.keys import display_prefix, generate_key, hash_key
from gateway.models import RevokedToken, VirtualKey


class VirtualKeyForm(forms.ModelForm):
    allowed_models = forms.JSONField(
        required=False, initial=list, help_text='e.g. ["openai/*", "anthropic/claude-3-5-haiku"]'
    )

    class Meta:
        model = VirtualKey
        fields = ["name", "allowed_models", "is_active", "expires_at"]

    def clean_allowed_models(self) -> list[str]:
        value = self.cleaned_data.get("allowed_models") or []
        if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
            raise forms.ValidationError("A list of provider/model patterns is required.")
        return value


@admin.register(VirtualKey)
class VirtualKeyAdmin(admin.ModelAdmin):
    form = VirtualKeyForm
    list_display = ["name", "prefix", "is_active", "expires_at", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix", "created_at"]
    actions = ["deactivate", "activate"]

    def save_model(self, request: HttpRequest, obj: VirtualKey, form: Any, change: bool) -> None:
        if not change:
            raw = generate_key()
            obj.prefix, obj.key_hash = display_prefix(raw), hash_key(raw)
            super().save_model(request, obj, form, change)
            messages.warning(
                request,
                f"New virtual key for {obj.name}: {raw} — copy it now, it is not shown again.",
            )
            return
        super().save_model(request, obj, form, change)

    @admin.action(description="Deactivate selected keys")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[VirtualKey]) -> None:
        count = queryset.update(is_active=False)
        self.message_user(request, f"{count} key(s) deactivated.")

    @admin.action(description="Activate selected keys")
    def activate(self, request: HttpRequest, queryset: QuerySet[VirtualKey]) -> None:
        count = queryset.update(is_active=True)
        self.message_user(request, f"{count} key(s) activated.")


@admin.register(RevokedToken)
class RevokedTokenAdmin(admin.ModelAdmin):
    """Read-only: tokens are revoked with ``manage.py revoke_jwt``, and a revocation is not
    undone by hand."""

    list_display = ["jti", "issued_before", "revoked_at", "expires_at", "reason"]
    search_fields = ["jti", "reason"]
    date_hierarchy = "revoked_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
