"""Revoking JWTs before they expire, and the check every JWT request makes.

A token is revoked by its ``jti`` (tokens issued by ``issue_jwt`` carry one), and every token
issued before a moment is revoked by the all-before row (tokens from an external issuer without
a ``jti`` included; one without an ``iat`` cannot show it was issued after the moment, so it is
refused too while that row lasts). Rows live until no token they match can still be accepted,
which the lifetime bounds of gateway/access/tokens.py make finite.

The check is one indexed query, ``jti IN (<jti>, '*')``, whose answer a process keeps for
GATEWAY_KEY_CACHE_SECONDS, as it keeps virtual keys: a revocation made elsewhere (the
``revoke_jwt`` command) takes effect in every web process within that time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models.signals import post_save
from django.dispatch import receiver
from django.utils import timezone

from gateway.access.expiring import ExpiringCache
from gateway.access.models import RevokedToken
from gateway.access.tokens import TokenClaims, longest_lifetime


@dataclass(frozen=True)
class Revocations:
    """What the table says about one jti: revoked itself, and the all-before moment if any."""

    jti_revoked: bool
    issued_before: datetime | None

    def refuse(self, claims: TokenClaims) -> bool:
        if self.jti_revoked:
            return True
        if self.issued_before is None:
            return False
        return claims.issued_at is None or claims.issued_at < self.issued_before.timestamp()


class RevocationCache:
    """Answers of the revocation table per jti (None: tokens without one), each kept for
    GATEWAY_KEY_CACHE_SECONDS; ``max_entries`` is a backstop (expired entries go first, then
    the least recently used)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_entries: int = 20_000):
        self._entries: ExpiringCache[Revocations] = ExpiringCache(
            "GATEWAY_KEY_CACHE_SECONDS", clock, max_entries
        )

    def get(self, jti: str | None, load: Callable[[], Revocations]) -> Revocations:
        answer = self._entries.find(jti)
        if answer is None:
            answer = load()
            self._entries.put((jti, answer))
        return answer

    def clear(self) -> None:
        self._entries.clear()


revocation_cache = RevocationCache()


@receiver(post_save, sender=RevokedToken, dispatch_uid="gateway-revocation-cache-save")
def _forget_revocations(sender: type[RevokedToken], **kwargs: object) -> None:
    """A revocation saved in this process applies here at once."""
    revocation_cache.clear()


def is_revoked(claims: TokenClaims) -> bool:
    return revocation_cache.get(claims.jti, lambda: _load(claims.jti)).refuse(claims)


def _load(jti: str | None) -> Revocations:
    wanted = [RevokedToken.ALL_BEFORE] if jti is None else [jti, RevokedToken.ALL_BEFORE]
    now = timezone.now()
    jti_revoked, issued_before = False, None
    for row_jti, before, expires_at in RevokedToken.objects.filter(jti__in=wanted).values_list(
        "jti", "issued_before", "expires_at"
    ):
        if expires_at <= now:
            continue  # awaiting the purge; nothing it matches is valid any more
        if row_jti == RevokedToken.ALL_BEFORE:
            issued_before = before
        else:
            jti_revoked = True
    return Revocations(jti_revoked, issued_before)


# --- services -----------------------------------------------------------------------------------


def revoke_jti(jti: str, *, expires_at: datetime | None = None, reason: str = "") -> bool:
    """Revoke the token ``jti``; False when it already was. Without its ``exp`` the row is kept
    as long as any token may live."""
    if jti == RevokedToken.ALL_BEFORE:
        raise ValueError(f"{jti!r} is reserved for the all-before revocation")
    now = timezone.now()
    until = expires_at or now + timedelta(seconds=longest_lifetime())
    row, created = RevokedToken.objects.get_or_create(
        jti=jti, defaults={"expires_at": until, "revoked_at": now, "reason": reason}
    )
    if not created and row.expires_at < until:
        row.expires_at = until
        row.save(update_fields=["expires_at"])
    return created


def revoke_all_before(moment: datetime, *, reason: str = "") -> RevokedToken:
    """Revoke every token issued before ``moment``. A revocation is never undone by this: an
    earlier moment than the one in force leaves the later one. Returns the row in force."""
    now = timezone.now()
    if moment > now:
        raise ValueError("the moment must not be in the future")
    row = RevokedToken.objects.filter(jti=RevokedToken.ALL_BEFORE).first()
    if row is None:
        row = RevokedToken(jti=RevokedToken.ALL_BEFORE)
    elif row.expires_at > now and row.issued_before is not None and row.issued_before >= moment:
        return row
    row.issued_before = moment
    # Every token issued before the moment has expired once the longest lifetime has passed.
    row.expires_at = moment + timedelta(seconds=longest_lifetime())
    row.revoked_at = now
    row.reason = reason
    row.save()
    return row


def purge_expired_revocations() -> int:
    """Delete rows that no longer match any token that could be accepted."""
    deleted, _ = RevokedToken.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted
