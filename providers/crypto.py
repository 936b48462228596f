"""Provider credentials at rest: Fernet (AES-128-CBC + HMAC-SHA256) under a key from settings."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


def _fernet() -> Fernet:
    secret = settings.GATEWAY_ENCRYPTION_KEY or settings.SECRET_KEY
    key = base64.urlsafe_b64encode(
        hashlib.sha256(b"gateway-provider-key:" + secret.encode()).digest()
    )
    return Fernet(key)


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str | None:
    """The plaintext, or None when the key it was sealed with is no longer configured."""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        return None
