"""Webhook endpoints and their deliveries in the admin.

A new endpoint's signing secret is rendered in the answer to the POST that created it and
nowhere else (as virtual keys are, ``gateway/access/admin.py``). Deliveries are read-only, with
a re-send action.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html

from jobs.webhooks import services
from jobs.webhooks.models import WebhookDelivery, WebhookEndpoint

_SECRET_ATTRIBUTE = "_gateway_new_webhook_secret"  # noqa: S105 (an attribute name)


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=1000, assume_scheme="https")

    class Meta:
        model = WebhookEndpoint
        fields = ["name", "url", "virtual_key", "is_active"]

    def clean_url(self) -> str:
        try:
            return services.check_url(self.cleaned_data["url"])
        except services.InvalidWebhookUrl as exc:
            raise forms.ValidationError("An http:// or https:// URL is required.") from exc


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ["name", "url", "virtual_key", "is_active", "secret_prefix", "deliveries"]
    list_filter = ["is_active"]
    search_fields = ["name", "url"]
    readonly_fields = ["secret_prefix", "created_at"]

    @admin.display(description="Deliveries")
    def deliveries(self, obj: WebhookEndpoint) -> str:
        url = reverse("admin:webhooks_webhookdelivery_changelist")
        return format_html('<a href="{}?endpoint__id__exact={}">deliveries</a>', url, obj.pk)

    def save_model(
        self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool
    ) -> None:
        if not change:
            secret = services.new_secret()
            obj.set_secret(secret)
            setattr(request, _SECRET_ATTRIBUTE, secret)
        super().save_model(request, obj, form, change)

    def response_add(
        self, request: HttpRequest, obj: WebhookEndpoint, post_url_continue: str | None = None
    ) -> HttpResponse:
        secret = getattr(request, _SECRET_ATTRIBUTE, None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        opts = self.opts
        context = {
            **self.admin_site.each_context(request),
            "title": f"Webhook endpoint {obj.name} created",
            "opts": opts,
            "endpoint": obj,
            "secret": secret,
            "change_url": reverse("admin:webhooks_webhookendpoint_change", args=[obj.pk]),
            "changelist_url": reverse("admin:webhooks_webhookendpoint_changelist"),
        }
        response = TemplateResponse(request, "admin/webhooks/webhookendpoint/created.html", context)
        add_never_cache_headers(response)
        return response


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """Each notice: its attempts, where it stands and what went wrong; re-send on demand."""

    list_display = [
        "id",
        "endpoint",
        "job_id",
        "event_type",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "delivered_at",
    ]
    list_filter = ["status", "endpoint"]
    search_fields = ["=id", "=job__id"]
    actions = ["resend"]
    fields = readonly_fields = (  # the change permission is for the re-send action only
        "id",
        "endpoint",
        "job_id",
        "event_type",
        "status",
        "attempts",
        "due_since",
        "next_attempt_at",
        "last_attempt_at",
        "last_status_code",
        "last_error",
        "delivered_at",
        "created_at",
        "body",
    )

    @admin.display(description="Body")
    def body(self, obj: WebhookDelivery) -> str:
        if obj.payload is None:
            return "-"
        return format_html(
            "<pre style='white-space: pre-wrap'>{}</pre>",
            json.dumps(obj.payload, indent=2, ensure_ascii=False),
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Re-send selected deliveries now", permissions=["change"])
    def resend(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        count = services.resend_deliveries(queryset.values_list("pk", flat=True))
        self.message_user(request, f"{count} deliveries will be sent again now.")
