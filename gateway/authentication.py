"""Authentication of API callers: virtual keys (``sk-bf-…``), virtual-key JWTs and admin JWTs.

A token comes as ``Authorization: Bearer <token>`` or as ``x-bf-vk: <virtual key>``. Every
failure is a 401 with ``WWW-Authenticate`` (``authenticate_header``); the token itself is never
echoed or logged.
"""

from __future__ import annotations

import hmac

from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from gateway.errors import WWW_AUTHENTICATE, AuthenticationRequired
from gateway.keys import hash_key, looks_like_virtual_key
from gateway.models import VirtualKey
from gateway.principals import Principal
from gateway.tokens import ROLE_ADMIN, InvalidToken, decode_token

MAX_TOKEN_LENGTH = 8192


def _bearer_token(request: Request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationRequired("Authorization header must be 'Bearer <token>'.")
        return token.strip()
    virtual_key = request.META.get("HTTP_X_BF_VK", "").strip()
    if virtual_key and not looks_like_virtual_key(virtual_key):
        raise AuthenticationRequired("x-bf-vk takes a virtual key (sk-bf-…), not a token.")
    return virtual_key or None


def authenticate_virtual_key(raw_key: str) -> VirtualKey:
    digest = hash_key(raw_key)
    key = VirtualKey.objects.filter(key_hash=digest).first()
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
    if claims.role == ROLE_ADMIN:
        return Principal(virtual_key=None, is_admin=True)
    key = VirtualKey.objects.filter(pk=claims.key_id or 0).first()
    if key is None or not key.is_usable:
        raise AuthenticationRequired(
            "The token's virtual key is unknown, inactive or expired.", code="inactive_api_key"
        )
    return Principal(virtual_key=key)


class GatewayAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Principal, str] | None:
        token = _bearer_token(request)
        if token is None:
            return None  # IsAuthenticated then answers 401 "missing_api_key"
        principal = authenticate_token(token)
        return principal, "token"

    def authenticate_header(self, request: Request) -> str:
        return WWW_AUTHENTICATE
