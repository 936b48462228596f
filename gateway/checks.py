"""System checks for setting combinations that would only fail later, at the first request."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register


@register()
def gateway_settings_check(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    problems: list[Any] = []
    if settings.GATEWAY_DEFAULT_RESULT_TTL > settings.GATEWAY_MAX_RESULT_TTL:
        problems.append(
            Error("GATEWAY_DEFAULT_RESULT_TTL is above GATEWAY_MAX_RESULT_TTL.", id="gateway.E001")
        )
    algorithm = settings.GATEWAY_JWT_ALGORITHM
    if (
        algorithm == "HS256"
        and settings.GATEWAY_JWT_SECRET
        and len(settings.GATEWAY_JWT_SECRET) < 32
    ):
        problems.append(
            Error("GATEWAY_JWT_SECRET must be at least 32 characters for HS256.", id="gateway.E002")
        )
    if algorithm != "HS256" and settings.GATEWAY_JWT_SECRET and not settings.GATEWAY_JWT_PUBLIC_KEY:
        problems.append(
            Error(
                f"GATEWAY_JWT_ALGORITHM is {algorithm} but only GATEWAY_JWT_SECRET is set; "
                "set GATEWAY_JWT_PUBLIC_KEY.",
                id="gateway.E003",
            )
        )
    if settings.GATEWAY_JOB_LEASE_SECONDS < 15:
        problems.append(
            Warning(
                "GATEWAY_JOB_LEASE_SECONDS below 15 s risks running jobs twice on a busy worker.",
                id="gateway.W001",
            )
        )
    for bound in ("GATEWAY_JWT_MAX_LIFETIME", "GATEWAY_JWT_ADMIN_MAX_LIFETIME"):
        if getattr(settings, bound) < settings.GATEWAY_JWT_DEFAULT_LIFETIME:
            problems.append(
                Warning(
                    f"GATEWAY_JWT_DEFAULT_LIFETIME is above {bound}: tokens issue_jwt makes "
                    "for that role live only as long as the bound allows.",
                    id="gateway.W003",
                )
            )
    if _database_is_shared() and settings.SECRET_KEY_FROM_VAR_DIR:
        problems.append(
            Warning(
                "SECRET_KEY is not set, so this process uses the key in var/secret_key. Virtual "
                "keys are hashed with it: every web process sharing this database must use the "
                "same SECRET_KEY.",
                id="gateway.W002",
            )
        )
    return problems


def _database_is_shared() -> bool:
    """Anything but the embedded SQLite file can be reached by processes on other machines."""
    return bool(settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3")
