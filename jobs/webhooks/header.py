"""The ``x-bf-async-webhook`` header of a submit: the endpoint told when the job ends."""

from __future__ import annotations

from django.http import HttpRequest

from gateway.access.principals import Principal
from gateway.http.errors import InvalidRequest
from jobs.webhooks.models import WebhookEndpoint

WEBHOOK_HEADER = "x-bf-async-webhook"


def webhook_from(request: HttpRequest, principal: Principal) -> WebhookEndpoint | None:
    """The endpoint the header names; None, without a query, when there is no header.

    An unknown name, an inactive endpoint and one bound to another virtual key are one 400:
    a caller learns nothing about endpoints it may not use. Admin tokens may name any.
    """
    raw = request.META.get("HTTP_X_BF_ASYNC_WEBHOOK")
    if raw is None:
        return None
    name = raw.strip(" \t")
    endpoint = (
        WebhookEndpoint.objects.filter(name=name, is_active=True)
        .only("id", "virtual_key_id")
        .first()
        if name
        else None
    )
    bound = endpoint.virtual_key_id if endpoint is not None else None
    if endpoint is None or (
        bound is not None and not principal.is_admin and bound != _key_id(principal)
    ):
        raise InvalidRequest(
            f"{WEBHOOK_HEADER} names no active webhook endpoint this key may use.",
            param=WEBHOOK_HEADER,
            code="unknown_webhook",
        )
    return endpoint


def _key_id(principal: Principal) -> int | None:
    return principal.virtual_key.pk if principal.virtual_key is not None else None
