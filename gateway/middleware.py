"""The admin's session, user, message and login-throttling middleware, run for its pages only.

The API authenticates every request with a token and keeps no state between requests, so the
cookie machinery would only cost its requests time (5-10 % of a poll's CPU here). These
classes are the stock middleware, so Django's and django-axes' checks still find them; outside
``ADMIN_PATH`` they pass the request straight on.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from axes.middleware import AxesMiddleware
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponseBase
from django.utils.deprecation import MiddlewareMixin

ADMIN_PATH = "/admin/"


class _AdminOnly(MiddlewareMixin):
    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if not request.path_info.startswith(ADMIN_PATH):
            return self.get_response(request)
        return super().__call__(request)


class AdminSessionMiddleware(_AdminOnly, SessionMiddleware):
    pass


class AdminAuthenticationMiddleware(_AdminOnly, AuthenticationMiddleware):
    pass


class AdminMessageMiddleware(_AdminOnly, MessageMiddleware):
    pass


class AdminAxesMiddleware(AxesMiddleware):
    """Turns a locked-out admin login into the lockout page."""

    def __call__(self, request: HttpRequest) -> Any:
        if not request.path_info.startswith(ADMIN_PATH):
            return self.get_response(request)
        return super().__call__(request)
