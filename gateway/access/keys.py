"""Virtual key material: generated once, shown once, stored as an HMAC and a display prefix."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets

from django.conf import settings

KEY_PREFIX = "sk-bf-"
DISPLAY_CHARS = 10  # "sk-bf-" plus four characters, enough to tell keys apart in the admin


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(raw_key: str) -> str:
    """The key's HMAC-SHA256 under a pepper derived from SECRET_KEY, in hex: what is stored."""
    message = raw_key.encode("utf-8", "surrogatepass")
    return hmac.digest(_pepper(settings.SECRET_KEY), message, "sha256").hex()


@functools.lru_cache(maxsize=2)
def _pepper(secret_key: str) -> bytes:
    return hashlib.sha256(b"gateway-virtual-key:" + secret_key.encode()).digest()


def display_prefix(raw_key: str) -> str:
    return raw_key[:DISPLAY_CHARS]


def looks_like_virtual_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)
