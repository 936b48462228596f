"""How every entry point stops on a malformed setting: one line on stderr, no traceback.

``manage.py``, ``gateway.wsgi`` (granian) and the Celery app (``celery -A gateway``) all load
the settings through ``load_settings``, so a typo in a deployment reads the same everywhere:
the variable, what it expects, and exit status 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.exceptions import ImproperlyConfigured

EXIT_STATUS = 2


@contextmanager
def exit_on_bad_configuration() -> Iterator[None]:
    try:
        yield
    except ImproperlyConfigured as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message held
        sys.stderr.write(f"Configuration error: {message}\n")
        sys.stderr.flush()
        raise SystemExit(EXIT_STATUS) from None


def load_settings() -> None:
    """Read the settings now, so a malformed one stops the process before it does anything."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
    from django.conf import settings

    with exit_on_bad_configuration():
        settings.INSTALLED_APPS  # noqa: B018  (reading any setting imports them all)
