"""Authentication of API callers: virtual keys (``sk-bf-…``), virtual-key JWTs and admin JWTs.

A token comes as ``Authorization: Bearer <token>`` or as ``x-bf-vk: <virtual key>``. Every
failure is a 401 with ``WWW-Authenticate`` (``authenticate_header``); the token itself is never
echoed or logged.

Every API request authenticates, so the key rows are kept in a per-process cache for
GATEWAY_KEY_CACHE_SECONDS: a key deactivated, deleted or given other allowed models takes effect
in every process within that time (at once in the process that saved it); an expiry date is
checked on every request. The cache is keyed by the key's HMAC (or the key's id, for JWTs),
never by the raw key, and remembers only keys that exist.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from gateway.access.expiring import ExpiringCache
from gateway.access.keys import hash_key, looks_like_virtual_key
from gateway.access.models import VirtualKey
from gateway.access.principals import Principal
from gateway.access.revocation import is_revoked
from gateway.access.tokens import ROLE_ADMIN, InvalidToken, decode_token
from gateway.http.errors import WWW_AUTHENTICATE, AuthenticationRequired

MAX_TOKEN_LENGTH = 8192


class KeyCache:
    """Virtual keys as read from the database, each kept for GATEWAY_KEY_CACHE_SECONDS.

    Entries are looked up by the key's HMAC (``hash``) or its primary key (``pk``); both point at
    the same row, and forgetting a key forgets both entries. Unknown keys are never remembered,
    so the cache holds at most one entry pair per key in the database; ``max_entries`` is a
    backstop (expired entries go first, then the least recently used).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_entries: int = 20_000):
        self._entries: ExpiringCache[VirtualKey] = ExpiringCache(
            "GATEWAY_KEY_CACHE_SECONDS", clock, max_entries
        )

    def get(self, cache_key: Hashable, load: Callable[[], VirtualKey | None]) -> VirtualKey | None:
        """The cached key, or ``load()``'s answer (remembered when it is a key)."""
        key = self._entries.find(cache_key)
        if key is None:
            key = load()
            if key is not None:
                self._entries.put((("hash", key.key_hash), key), (("pk", key.pk), key))
        return key

    def forget(self, key: VirtualKey) -> None:
        self._entries.forget(("hash", key.key_hash), ("pk", key.pk))

    def clear(self) -> None:
        self._entries.clear()


key_cache = KeyCache()


@receiver(post_save, sender=VirtualKey, dispatch_uid="gateway-key-cache-save")
@receiver(post_delete, sender=VirtualKey, dispatch_uid="gateway-key-cache-delete")
def _forget_changed_key(sender: type[VirtualKey], instance: VirtualKey, **kwargs: Any) -> None:
    """A key saved or deleted in this process is read again on its next use here."""
    key_cache.forget(instance)


def _bearer_token(meta: Mapping[str, Any]) -> str | None:
    header = meta.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationRequired("Authorization header must be 'Bearer <token>'.")
        return token.strip()
    virtual_key = meta.get("HTTP_X_BF_VK", "").strip()
    if virtual_key and not looks_like_virtual_key(virtual_key):
        raise AuthenticationRequired("x-bf-vk takes a virtual key (sk-bf-…), not a token.")
    return virtual_key or None


def authenticate_virtual_key(raw_key: str) -> VirtualKey:
    digest = hash_key(raw_key)
    key = key_cache.get(
        ("hash", digest), lambda: VirtualKey.objects.filter(key_hash=digest).first()
    )
    if key is None or not hmac.compare_digest(key.key_hash, digest):
        raise AuthenticationRequired("Invalid virtual key.")
    if not key.is_usable:
        raise AuthenticationRequired("Virtual key is inactive or expired.", code="inactive_api_key")
    return key


def authenticate_token(token: str) -> Principal:
    if len(token) > MAX_TOKEN_LENGTH:
        raise AuthenticationRequired("Token is too long.")
    if looks_like_virtual_key(token):
        return Principal(virtual_key=authenticate_virtual_key(token))
    try:
        claims = decode_token(token)
    except InvalidToken as exc:
        raise AuthenticationRequired(f"Invalid token: {exc}.", code="invalid_token") from None
    if is_revoked(claims):
        raise AuthenticationRequired("Invalid token: token has been revoked.", code="invalid_token")
    if claims.role == ROLE_ADMIN:
        return Principal(virtual_key=None, is_admin=True)
    key_id = claims.key_id or 0
    key = key_cache.get(("pk", key_id), lambda: VirtualKey.objects.filter(pk=key_id).first())
    if key is None or not key.is_usable:
        raise AuthenticationRequired(
            "The token's virtual key is unknown, inactive or expired.", code="inactive_api_key"
        )
    return Principal(virtual_key=key)


def authenticate_request(meta: Mapping[str, Any]) -> Principal | None:
    """The caller named by a request's headers (its WSGI environ); None when none is named.

    A malformed, unknown, inactive or expired credential raises AuthenticationRequired.
    """
    token = _bearer_token(meta)
    return None if token is None else authenticate_token(token)


class GatewayAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Principal, str] | None:
        principal = authenticate_request(request.META)
        if principal is None:
            return None  # IsAuthenticated then answers 401 "missing_api_key"
        return principal, "token"

    def authenticate_header(self, request: Request) -> str:
        return WWW_AUTHENTICATE
