"""Providers and their keys in the admin.

Whoever can edit a provider decides where its stored keys are sent, so every write here needs the
``manage_provider_credentials`` permission (superusers have it); the stock add and change
permissions only let a user look. Pointing a provider at another base URL or protocol deletes its
stored keys unless they are entered again in the same save, and a provider that would take over
an environment provider's name must be confirmed as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django import forms
from django.contrib import admin, messages
from django.forms.models import BaseModelFormSet
from django.http import HttpRequest, HttpResponse

from providers import services
from providers.models import ModelPrice, ProviderConfig, ProviderKey
from providers.registry import ENV_PROVIDERS, environment_providers

MANAGE_PERMISSION = "providers.manage_provider_credentials"


def can_manage_credentials(request: HttpRequest) -> bool:
    return request.user.has_perm(MANAGE_PERMISSION)


class ProviderKeyForm(forms.ModelForm):
    api_key = forms.CharField(
        label="API key",
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

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        fields = list(super().get_fields(request, obj))
        if not can_manage_credentials(request):
            # A read-only inline shows model attributes, and the key is not one.
            fields.remove("api_key")
        return fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_manage_credentials(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_manage_credentials(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_manage_credentials(request)


MASK = "••••••••"


def masked_url(url: str) -> str:
    """The URL without what may be a credential: user info and the query's values."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = "&".join(
        f"{pair.partition('=')[0]}={MASK}" if "=" in pair else pair
        for pair in parts.query.split("&")
        if pair
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


@dataclass(frozen=True)
class EnvironmentProviderRow:
    """An environment provider as the providers page shows it: never its key."""

    name: str
    protocol: str
    base_url: str
    has_key: bool
    overridden: bool  # an active admin provider of the same name takes its traffic


def environment_provider_rows() -> list[EnvironmentProviderRow]:
    entries = environment_providers()
    overridden = set(
        ProviderConfig.objects.filter(name__in=entries, is_active=True).values_list(
            "name", flat=True
        )
    )
    return [
        EnvironmentProviderRow(
            name=entry.name,
            protocol=entry.protocol,
            base_url=masked_url(entry.base_url),
            has_key=bool(entry.keys),
            overridden=entry.name in overridden,
        )
        for entry in sorted(entries.values(), key=lambda entry: entry.name)
    ]


def _environment_names() -> str:
    return ", ".join(sorted(ENV_PROVIDERS))


class ProviderConfigForm(forms.ModelForm):
    base_url = forms.URLField(
        label="Base URL",
        max_length=500,
        assume_scheme="https",
        help_text=ProviderConfig._meta.get_field("base_url").help_text,
    )
    override_environment_provider = forms.BooleanField(
        required=False,
        label="Override the environment provider",
        help_text=(
            f"Needed when the name is one of the providers configured from the environment "
            f"({_environment_names()}): an admin provider of that name takes all of its traffic, "
            f"with this base URL and these keys instead of NAME_BASE_URL and NAME_API_KEY."
        ),
    )

    # Keys deleted by the save because the provider now points elsewhere (set by the admin).
    dropped_keys: list[ProviderKey]

    class Meta:
        model = ProviderConfig
        fields = ["name", "protocol", "base_url", "is_active", "override_environment_provider"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dropped_keys = []
        if self.instance.pk and "base_url" in self.fields:
            self.fields["base_url"].help_text = (
                f"{self.fields['base_url'].help_text}. Changing the base URL or the protocol "
                "deletes the stored keys, unless they are entered again below in the same save."
            )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        name = cleaned.get("name")
        renamed = not self.instance.pk or "name" in self.changed_data
        if name in ENV_PROVIDERS and renamed and not cleaned.get("override_environment_provider"):
            self.add_error(
                "override_environment_provider",
                f"“{name}” is also an environment provider: tick this box to route all of its "
                f"traffic to this provider instead, or choose another name.",
            )
        return cleaned

    @property
    def endpoint_changed(self) -> bool:
        return bool(services.ENDPOINT_FIELDS & set(self.changed_data))


def _keys_entered(formsets: list[BaseModelFormSet[Any, Any]]) -> set[int]:
    """Keys saved with an API key typed into this very form, new or replaced."""
    entered = set()
    for formset in formsets:
        if formset.model is not ProviderKey:
            continue
        for form in formset.forms:
            if form.cleaned_data.get("api_key") and form.instance.pk is not None:
                entered.add(form.instance.pk)
    return entered


@admin.register(ProviderConfig)
class ProviderConfigAdmin(admin.ModelAdmin):
    form = ProviderConfigForm
    list_display = ["name", "protocol", "base_url", "is_active", "key_count"]
    list_filter = ["protocol", "is_active"]
    search_fields = ["name"]
    inlines = [ProviderKeyInline]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Beside the admin's providers, those the environment configures (read-only here).
        context = {
            **(extra_context or {}),
            "environment_providers": environment_provider_rows(),
            "environment_names": sorted(ENV_PROVIDERS),
            "mask": MASK,
        }
        return super().changelist_view(request, context)

    @admin.display(description="keys")
    def key_count(self, obj: ProviderConfig) -> int:
        return obj.keys.filter(is_active=True).count()

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        fields = list(super().get_fields(request, obj))
        if not can_manage_credentials(request):
            fields.remove("override_environment_provider")  # a decision, not an attribute
        return fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return can_manage_credentials(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_manage_credentials(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_manage_credentials(request)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        if not change or not form.endpoint_changed:
            return
        form.dropped_keys = services.drop_stored_keys(form.instance, keep=_keys_entered(formsets))
        if form.dropped_keys:
            labels = ", ".join(key.label for key in form.dropped_keys)
            self.message_user(
                request,
                f"The base URL or protocol of {form.instance} changed, so its stored keys were "
                f"deleted ({labels}): enter them again for the new endpoint.",
                messages.WARNING,
            )

    def construct_change_message(
        self, request: HttpRequest, form: Any, formsets: Any, add: bool = False
    ) -> list[dict[str, Any]]:
        message: list[dict[str, Any]] = super().construct_change_message(
            request, form, formsets, add
        )
        # Only labels: the history says which keys went, never what they were.
        message.extend(
            {"deleted": {"name": str(ProviderKey._meta.verbose_name), "object": str(key)}}
            for key in form.dropped_keys
        )
        return message


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    """Prices that win over the bundled price table (also set by ``manage.py set_model_price``);
    jobs finished after a change are charged at the new price."""

    list_display = ["provider", "model", "input_per_million", "output_per_million", "updated_at"]
    list_filter = ["provider"]
    search_fields = ["provider", "model"]
    readonly_fields = ["updated_at"]
