"""The admin's session, user and message middleware, run for the admin's pages only.

The API authenticates every request with a token and keeps no state between requests, so the
cookie machinery would only cost its requests time (5-10 % of a poll's CPU here). These
classes are the stock middleware, so Django's admin checks still find them; outside
``ADMIN_PATH`` they pass the request straight on.
"""

from __future__ import annotations

from collections.abc import Awaitable

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
