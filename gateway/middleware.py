"""The admin's session, user, message and login-throttling middleware, run for its pages only.

The API authenticates every request with a token and keeps no state between requests, so the
cookie machinery would only cost its requests time (docs/measurements.md, "Admin middleware").
These classes are the stock middleware, so Django's and django-axes' checks still find them;
outside ``ADMIN_PATH`` they pass the request straight on. Beside them, the Content-Security-Policy
every response carries.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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


# The API answers JSON only: nothing in it may run, load or be framed. The admin and /docs/
# (Redoc) run their own scripts and styles from this origin; Redoc also starts a web worker
# from a blob: URL and sets inline styles.
API_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'"
PAGE_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; worker-src 'self' blob:; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
PAGE_PATHS = (ADMIN_PATH, "/docs/")


class ContentSecurityPolicyMiddleware:
    """Sets one of two fixed Content-Security-Policy headers on every response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        response.headers["Content-Security-Policy"] = (
            PAGE_CONTENT_SECURITY_POLICY
            if request.path_info.startswith(PAGE_PATHS)
            else API_CONTENT_SECURITY_POLICY
        )
        return response
