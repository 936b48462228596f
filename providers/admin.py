from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db import models

from providers.models import ProviderConfig, ProviderKey


class ProviderKeyForm(forms.ModelForm):
    api_key = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        strip=True,
        help_text="Stored encrypted; never shown again. Leave empty to keep the current key.",
    )

    class Meta:
        model = ProviderKey
        fields = ["label", "api_key", "weight", "is_active"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not self.instance.pk and not cleaned.get("api_key"):
            self.add_error("api_key", "An API key is required for a new provider key.")
        return cleaned

    def save(self, commit: bool = True) -> ProviderKey:
        if self.cleaned_data.get("api_key"):
            self.instance.set_key(self.cleaned_data["api_key"])
        saved: ProviderKey = super().save(commit=commit)
        return saved


class ProviderKeyInline(admin.TabularInline):
    model = ProviderKey
    form = ProviderKeyForm
    extra = 0
    fields = ["label", "api_key", "weight", "is_active", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(ProviderConfig)
class ProviderConfigAdmin(admin.ModelAdmin):
    list_display = ["name", "protocol", "base_url", "is_active", "key_count"]
    list_filter = ["protocol", "is_active"]
    search_fields = ["name"]
    inlines = [ProviderKeyInline]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.display(description="keys")
    def key_count(self, obj: ProviderConfig) -> int:
        return obj.keys.filter(is_active=True).count()
