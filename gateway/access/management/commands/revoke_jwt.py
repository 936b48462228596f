from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from gateway.access.models import RevokedToken
from gateway.access.revocation import revoke_all_before, revoke_jti
from gateway.access.tokens import MAX_JTI_LENGTH, InvalidToken, read_signed_token


class Command(BaseCommand):
    help = (
        "Revoke JWTs before they expire: one token (--token TOKEN or --jti JTI), or every token "
        "issued before a moment (--all-before ISO8601). Web processes refuse a revoked token "
        "within GATEWAY_KEY_CACHE_SECONDS. The token itself is never printed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--token", help="The token to revoke (its jti is read from it).")
        which.add_argument("--jti", help="The jti (token id) of the token to revoke.")
        which.add_argument(
            "--all-before",
            metavar="ISO8601",
            help="Revoke every token issued (iat) before this time, UTC unless it has an offset; "
            "tokens without an iat too.",
        )
        parser.add_argument("--reason", default="", help="Why, kept with the revocation.")

    def handle(self, *args: Any, **options: Any) -> None:
        reason = options["reason"].strip()
        if len(reason) > 200:
            raise CommandError("--reason must be at most 200 characters")
        if options["all_before"] is not None:
            self._revoke_all_before(options["all_before"], reason)
        elif options["jti"] is not None:
            self._revoke_jti(options["jti"].strip(), None, reason)
        else:
            self._revoke_token(options["token"].strip(), reason)

    def _revoke_token(self, token: str, reason: str) -> None:
        try:
            claims = read_signed_token(token)
        except InvalidToken as exc:
            raise CommandError(f"cannot revoke the token: {exc}") from None
        if claims.jti is None:
            raise CommandError(
                "the token has no jti, so it cannot be revoked on its own; "
                "use --all-before to revoke every token issued before a moment"
            )
        expires_at = datetime.fromtimestamp(claims.expires_at or 0, UTC)
        if expires_at <= timezone.now():
            self.stdout.write(f"token {claims.jti} has already expired; nothing to revoke")
            return
        self._revoke_jti(claims.jti, expires_at, reason, role=claims.role)

    def _revoke_jti(
        self, jti: str, expires_at: datetime | None, reason: str, role: str | None = None
    ) -> None:
        if not jti or len(jti) > MAX_JTI_LENGTH or jti == RevokedToken.ALL_BEFORE:
            raise CommandError(f"--jti must be a token id of 1 to {MAX_JTI_LENGTH} characters")
        created = revoke_jti(jti, expires_at=expires_at, reason=reason)
        what = f"{role} token {jti}" if role else f"token {jti}"
        if expires_at is not None:
            what += f" (expires {expires_at:%Y-%m-%dT%H:%M:%SZ})"
        self.stdout.write(f"revoked {what}" if created else f"{what} was already revoked")

    def _revoke_all_before(self, value: str, reason: str) -> None:
        try:
            moment = parse_datetime(value.strip())
        except ValueError:
            moment = None
        if moment is None:
            raise CommandError("--all-before must be an ISO 8601 date and time")
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment, UTC)
        try:
            row = revoke_all_before(moment, reason=reason)
        except ValueError as exc:
            raise CommandError(f"--all-before: {exc}") from None
        in_force = row.issued_before or moment
        stamp = f"{in_force.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
        if in_force > moment:
            self.stdout.write(f"already revoked: every token issued before {stamp}, a later moment")
        else:
            self.stdout.write(f"revoked every token issued before {stamp}")
