from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway.access.models import VirtualKey
from gateway.access.tokens import ROLE_ADMIN, ROLE_VIRTUAL_KEY, LifetimeTooLong, issue_token


class Command(BaseCommand):
    help = "Issue a JWT for a virtual key (--key NAME) or an admin (--admin); printed last."

    def add_arguments(self, parser: CommandParser) -> None:
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--key", help="Name of the virtual key the token acts as.")
        who.add_argument("--admin", action="store_true", help="An admin token (reads every job).")
        parser.add_argument(
            "--lifetime",
            type=int,
            help="Seconds until the token expires, at most GATEWAY_JWT_MAX_LIFETIME "
            "(GATEWAY_JWT_ADMIN_MAX_LIFETIME for --admin).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        lifetime = options["lifetime"]
        if lifetime is not None and lifetime < 1:
            raise CommandError("--lifetime must be at least 1 second")
        try:
            if options["admin"]:
                token = issue_token(role=ROLE_ADMIN, lifetime=lifetime)
            else:
                key = VirtualKey.objects.filter(name=options["key"]).first()
                if key is None:
                    raise CommandError(f"no virtual key named {options['key']!r}")
                if not key.is_usable:
                    raise CommandError(f"virtual key {key.name!r} is inactive or expired")
                token = issue_token(role=ROLE_VIRTUAL_KEY, key_id=key.pk, lifetime=lifetime)
        except LifetimeTooLong as exc:
            raise CommandError(f"--lifetime is too long: {exc}") from None
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(token)
