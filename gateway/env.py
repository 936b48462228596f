"""Typed readers for settings taken from the environment.

Each reader fails loudly on a malformed value: a typo in a deployment must stop the process at
start-up, not fall back silently to a default. Secrets may also come from ``NAME_FILE``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is not None and value.strip() != "":
        return value.strip()
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        try:
            return Path(file_path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE cannot be read: {exc.strerror}") from exc
    return None


def env_str(name: str, default: str = "") -> str:
    value = _raw(name)
    return default if value is None else value


def env_int(
    name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, got {number}")
    return number


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}")
    return number


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}")


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    value = _raw(name)
    if value is None:
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]


def env_choice(
    name: str, default: str, choices: set[str], *, normalize: Callable[[str], str] = str
) -> str:
    value = normalize(env_str(name, default))
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def env_url(name: str, default: str, schemes: Collection[str]) -> str:
    """A URL with one of ``schemes``. Messages never repeat the URL: it may hold a password."""
    value = env_str(name, default)
    *others, last = [f"{scheme}://" for scheme in schemes]
    listed = f"{', '.join(others)} or {last}" if others else last
    expected = f"{name} must be a {listed} URL"
    scheme, separator, _ = value.partition("://")
    if not separator or not _SCHEME.fullmatch(scheme):
        raise ImproperlyConfigured(f"{expected}, got a value without a scheme")
    if scheme.lower() not in schemes:
        raise ImproperlyConfigured(f"{expected}, got {scheme}://")
    try:
        urlsplit(value).port  # noqa: B018  (a malformed port raises here)
    except ValueError:
        raise ImproperlyConfigured(
            f"{expected}; its port is not a number from 0 to 65535"
        ) from None
    return value
