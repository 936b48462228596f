"""Typed readers for settings taken from the environment, on environs.

environs parses and validates each value (numbers, booleans, bounds) and reads ``NAME_FILE``, a
file holding the value, for any ``NAME`` (its ``FileAwareEnv``; the file wins when both are set).
These readers add what a deployment needs on top: a blank value counts as unset (compose passes
``NAME=`` for a variable left out of ``.env``), and a malformed value stops start-up with one line
naming the variable and what it expects, never repeating a URL (it may hold a password).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured
from environs import EnvValidationError, FileAwareEnv
from marshmallow import ValidationError
from marshmallow.validate import OneOf, Range

_env = FileAwareEnv(strip_whitespace=True)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}")


def _given(name: str) -> bool:
    return bool(os.environ.get(name, "").strip() or os.environ.get(f"{name}_FILE"))


@contextmanager
def _one_line(name: str) -> Iterator[None]:
    """environs' and marshmallow's errors as one ImproperlyConfigured naming ``name``."""
    try:
        yield
    except EnvValidationError as exc:
        messages = exc.error_messages
        listed = messages.values() if isinstance(messages, dict) else messages
        raise ImproperlyConfigured(f"{name} {'; '.join(map(str, listed))}") from None
    except ValidationError as exc:
        raise ImproperlyConfigured(f"{name} {'; '.join(exc.messages)}") from None
    except ValueError:  # FileAwareEnv: NAME_FILE names no file it can read
        raise ImproperlyConfigured(f"{name}_FILE must name a readable file") from None


def _bounds(minimum: float | None, maximum: float | None) -> list[Range]:
    bounds = []
    if minimum is not None:
        bounds.append(Range(min=minimum, error="must be at least {min}, got {input}"))
    if maximum is not None:
        bounds.append(Range(max=maximum, error="must be at most {max}, got {input}"))
    return bounds


def _saying(**messages: str) -> dict[str, Any]:
    """marshmallow's ``error_messages`` for a field, which environs passes on to it."""
    return {"error_messages": messages}


def env_str(name: str, default: str = "") -> str:
    if not _given(name):
        return default
    with _one_line(name):
        return _env.str(name).strip()


def env_int(
    name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    if not _given(name):
        return default
    invalid = _saying(invalid="must be an integer, got {input!r}")
    with _one_line(name):
        return _env.int(name, validate=_bounds(minimum, maximum), **invalid)


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    if not _given(name):
        return default
    invalid = _saying(invalid="must be a number, got {input!r}", special="must be a finite number")
    with _one_line(name):
        return _env.float(name, validate=_bounds(minimum, None), **invalid)


def env_bool(name: str, default: bool) -> bool:
    """true/false, yes/no, on/off, 1/0 (and marshmallow's other spellings of them)."""
    if not _given(name):
        return default
    invalid = _saying(invalid="must be a boolean (true/false), got {input!r}")
    with _one_line(name):
        return _env.bool(name, **invalid)


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    """Comma-separated; items are trimmed and empty ones dropped."""
    if not _given(name):
        return list(default or [])
    with _one_line(name):
        items: list[str] = _env.list(name)
        return [item.strip() for item in items if item.strip()]


def env_choice(
    name: str, default: str, choices: set[str], *, normalize: Callable[[str], str] = str
) -> str:
    value = normalize(env_str(name, default))
    with _one_line(name):
        OneOf(choices, error=f"must be one of {sorted(choices)}, got {{input!r}}")(value)
    return value


def env_url(name: str, default: str, schemes: Collection[str]) -> str:
    """A URL with one of ``schemes``.

    Checked here rather than by environs' ``url``, whose validator wants a dotted host name
    (compose's ``postgres``) and a host at all (``filesystem://``, ``sqlite:////path``).
    """
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
