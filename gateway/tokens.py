"""Virtual-key and admin JWTs (PyJWT), with the algorithm pinned by settings.

Claims: ``role`` is ``virtual_key`` (with ``key_id``) or ``admin``; ``exp`` is required; ``aud``
and ``iss`` are set and checked when configured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

ROLE_VIRTUAL_KEY = "virtual_key"
ROLE_ADMIN = "admin"


class InvalidToken(Exception):
    pass


@dataclass(frozen=True)
class TokenClaims:
    role: str
    key_id: int | None


def _verification_key() -> str:
    if settings.GATEWAY_JWT_ALGORITHM == "HS256":
        return settings.GATEWAY_JWT_SECRET
    return settings.GATEWAY_JWT_PUBLIC_KEY


def _signing_key() -> str:
    if settings.GATEWAY_JWT_ALGORITHM == "HS256":
        key = settings.GATEWAY_JWT_SECRET
        name = "GATEWAY_JWT_SECRET"
    else:
        key = settings.GATEWAY_JWT_PRIVATE_KEY
        name = "GATEWAY_JWT_PRIVATE_KEY"
    if not key:
        raise ImproperlyConfigured(
            f"{name} must be set to issue {settings.GATEWAY_JWT_ALGORITHM} tokens"
        )
    return key


def jwt_enabled() -> bool:
    return bool(_verification_key())


def issue_token(*, role: str, key_id: int | None = None, lifetime: int | None = None) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "role": role,
        "iat": now,
        "exp": now + (lifetime or settings.GATEWAY_JWT_DEFAULT_LIFETIME),
        "sub": f"vk:{key_id}" if role == ROLE_VIRTUAL_KEY else "admin",
    }
    if key_id is not None:
        claims["key_id"] = key_id
    if settings.GATEWAY_JWT_AUDIENCE:
        claims["aud"] = settings.GATEWAY_JWT_AUDIENCE
    if settings.GATEWAY_JWT_ISSUER:
        claims["iss"] = settings.GATEWAY_JWT_ISSUER
    return jwt.encode(claims, _signing_key(), algorithm=settings.GATEWAY_JWT_ALGORITHM)


def decode_token(token: str) -> TokenClaims:
    key = _verification_key()
    if not key:
        raise InvalidToken("JWT authentication is not configured on this gateway")
    if not token.isascii():
        # A JWT is base64url text; PyJWT would fail to encode a lone surrogate with a 500.
        raise InvalidToken("token is malformed or its signature is invalid")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[settings.GATEWAY_JWT_ALGORITHM],  # pinned: "none" and others are refused
            audience=settings.GATEWAY_JWT_AUDIENCE or None,
            issuer=settings.GATEWAY_JWT_ISSUER or None,
            options={"require": ["exp"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token has expired") from None
    except jwt.ImmatureSignatureError:
        raise InvalidToken("token is not valid yet") from None
    except jwt.InvalidAudienceError:
        raise InvalidToken("token audience is not accepted") from None
    except jwt.InvalidIssuerError:
        raise InvalidToken("token issuer is not accepted") from None
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidToken(f"token lacks the required claim {exc.claim!r}") from None
    except jwt.InvalidTokenError:
        raise InvalidToken("token is malformed or its signature is invalid") from None
    role = claims.get("role")
    key_id = claims.get("key_id")
    if role == ROLE_ADMIN:
        return TokenClaims(role=ROLE_ADMIN, key_id=None)
    if role == ROLE_VIRTUAL_KEY and isinstance(key_id, int) and not isinstance(key_id, bool):
        return TokenClaims(role=ROLE_VIRTUAL_KEY, key_id=key_id)
    raise InvalidToken("token has no valid role")
