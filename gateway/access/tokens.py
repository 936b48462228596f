"""Virtual-key and admin JWTs (PyJWT), with the algorithm pinned by settings.

Claims: ``role`` is ``virtual_key`` (with ``key_id``) or ``admin``; ``exp`` is required; ``aud``
and ``iss`` are set and checked when configured. A token may not live longer than its role's
bound (GATEWAY_JWT_MAX_LIFETIME, GATEWAY_JWT_ADMIN_MAX_LIFETIME), counted from ``iat`` when it
has one and never reaching further than the bound from now, so a leaked token, or one minted
with a far ``exp`` by an external issuer, is useful for a bounded time at most. Tokens issued
here carry a ``jti``, so each can be revoked (gateway/access/revocation.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from jwt.types import Options

ROLE_VIRTUAL_KEY = "virtual_key"
ROLE_ADMIN = "admin"

# The revocation table's column; a longer jti could never be revoked one by one.
MAX_JTI_LENGTH = 255

# Seconds since the epoch; tests replace it to stand on either side of a lifetime bound.
clock: Callable[[], float] = time.time


class InvalidToken(Exception):
    pass


class LifetimeTooLong(ValueError):
    """An asked-for lifetime above the role's bound: such a token would be refused."""


@dataclass(frozen=True)
class TokenClaims:
    role: str
    key_id: int | None
    jti: str | None = None
    issued_at: int | None = None  # iat, seconds since the epoch
    expires_at: int | None = None  # exp


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


def max_lifetime(role: str) -> int:
    """Seconds a token of ``role`` may live at most."""
    if role == ROLE_ADMIN:
        return int(settings.GATEWAY_JWT_ADMIN_MAX_LIFETIME)
    return int(settings.GATEWAY_JWT_MAX_LIFETIME)


def longest_lifetime() -> int:
    """The bound of whichever role may live longest: no token outlives this."""
    return max(max_lifetime(ROLE_ADMIN), max_lifetime(ROLE_VIRTUAL_KEY))


def lifetime_setting(role: str) -> str:
    if role == ROLE_ADMIN:
        return "GATEWAY_JWT_ADMIN_MAX_LIFETIME"
    return "GATEWAY_JWT_MAX_LIFETIME"


def issue_token(*, role: str, key_id: int | None = None, lifetime: int | None = None) -> str:
    bound = max_lifetime(role)
    if lifetime is None:
        # One default serves both roles; it never outlives the shorter bound of admin tokens.
        lifetime = min(settings.GATEWAY_JWT_DEFAULT_LIFETIME, bound)
    elif lifetime > bound:
        raise LifetimeTooLong(
            f"a {role} token may live at most {bound} s ({lifetime_setting(role)}), "
            f"not {lifetime} s"
        )
    now = int(clock())
    claims: dict[str, Any] = {
        "role": role,
        "iat": now,
        "exp": now + lifetime,
        "sub": f"vk:{key_id}" if role == ROLE_VIRTUAL_KEY else "admin",
        "jti": uuid.uuid4().hex,
    }
    if key_id is not None:
        claims["key_id"] = key_id
    if settings.GATEWAY_JWT_AUDIENCE:
        claims["aud"] = settings.GATEWAY_JWT_AUDIENCE
    if settings.GATEWAY_JWT_ISSUER:
        claims["iss"] = settings.GATEWAY_JWT_ISSUER
    return jwt.encode(claims, _signing_key(), algorithm=settings.GATEWAY_JWT_ALGORITHM)


def decode_token(token: str) -> TokenClaims:
    """The claims of a token this gateway accepts now; InvalidToken says why not otherwise."""
    claims = _verified_claims(token, check_times=True)
    result = _claims(claims)
    bound = max_lifetime(result.role)
    expires_at = result.expires_at or 0
    too_long = result.issued_at is not None and expires_at - result.issued_at > bound
    if too_long or expires_at - clock() > bound:
        raise InvalidToken(f"token lifetime exceeds the {bound} s this gateway allows")
    return result


def read_signed_token(token: str) -> TokenClaims:
    """The claims of a token signed with this gateway's key, whether or not it is still valid
    (expired, too long-lived): what revoking it needs. InvalidToken when the signature, the
    claims' types or the role are wrong."""
    return _claims(_verified_claims(token, check_times=False))


def _verified_claims(token: str, *, check_times: bool) -> dict[str, Any]:
    key = _verification_key()
    if not key:
        raise InvalidToken("JWT authentication is not configured on this gateway")
    if not token.isascii():
        # A JWT is base64url text; PyJWT would fail to encode a lone surrogate with a 500.
        raise InvalidToken("token is malformed or its signature is invalid")
    options: Options = {"require": ["exp"]}
    if not check_times:
        options = {
            "require": ["exp"],
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "verify_aud": False,
            "verify_iss": False,
        }
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[settings.GATEWAY_JWT_ALGORITHM],  # pinned: "none" and others are refused
            audience=(settings.GATEWAY_JWT_AUDIENCE or None) if check_times else None,
            issuer=(settings.GATEWAY_JWT_ISSUER or None) if check_times else None,
            options=options,
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
    return claims


def _claims(claims: dict[str, Any]) -> TokenClaims:
    jti = claims.get("jti")
    if jti is not None and not (isinstance(jti, str) and 0 < len(jti) <= MAX_JTI_LENGTH):
        raise InvalidToken("token has an invalid 'jti'")
    times = {name: _seconds(claims, name) for name in ("iat", "exp")}
    role = claims.get("role")
    key_id = claims.get("key_id")
    if role == ROLE_ADMIN:
        key_id = None
    elif role != ROLE_VIRTUAL_KEY or not isinstance(key_id, int) or isinstance(key_id, bool):
        raise InvalidToken("token has no valid role")
    return TokenClaims(role, key_id, jti, times["iat"], times["exp"])


def _seconds(claims: dict[str, Any], name: str) -> int | None:
    # PyJWT reads its time claims with int() (a numeric string passes), so read them alike.
    if name not in claims:
        return None
    try:
        return int(claims[name])
    except (ValueError, TypeError, OverflowError):
        raise InvalidToken(f"token has an invalid {name!r}") from None
