"""How django-axes sees an admin login: the client's address, and the answer to a locked-out one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from axes.helpers import get_cool_off, get_failure_limit
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def peer_client_ip(request: HttpRequest) -> str | None:
    """The address of whoever opened the connection: the client, with no proxy in front."""
    return request.META.get("REMOTE_ADDR")


def forwarded_client_ip(request: HttpRequest) -> str | None:
    """Behind our proxy, the address it appended to X-Forwarded-For.

    The entries before it came from the client, who can write anything there.
    """
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    appended = forwarded.rsplit(",", 1)[-1].strip()
    return appended or peer_client_ip(request)


def lockout_response(
    request: HttpRequest, original_response: Any = None, credentials: Any = None
) -> HttpResponse:
    """429 Too Many Requests, in the admin's own page style."""
    cool_off = get_cool_off(request) or timedelta(0)
    seconds = int(cool_off.total_seconds())
    context = {
        "failure_limit": get_failure_limit(request, credentials),
        "cooloff_minutes": max(1, seconds // 60),
    }
    response = render(request, "admin/login_locked_out.html", context, status=429)
    response["Retry-After"] = str(seconds)
    return response
