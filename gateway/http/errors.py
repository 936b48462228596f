"""The one error contract: every 4xx/5xx of the API and every failed job's ``error``.

Domain errors are ``GatewayError`` subclasses carrying a status and a code; ``exception_handler``
renders them, DRF's own exceptions and Django's 404/500 in the one shape of README.md, "The API".
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

logger = logging.getLogger(__name__)


def error_body(
    *,
    status_code: int,
    error_type: str,
    code: str,
    message: str,
    param: str | None = None,
    is_gateway_error: bool = True,
    provider: str | None = None,
    model_requested: str | None = None,
    request_type: str | None = None,
    event_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    event_id = event_id or uuid.uuid4().hex
    extra_fields: dict[str, Any] = {
        "provider": provider,
        "model_requested": model_requested,
        "request_type": request_type,
    }
    if extra:
        extra_fields.update(extra)
    return {
        "event_id": event_id,
        "type": error_type,
        "is_bifrost_error": is_gateway_error,
        "status_code": status_code,
        "error": {
            "type": error_type,
            "code": code,
            "message": message,
            "param": param,
            "event_id": event_id,
        },
        "extra_fields": extra_fields,
    }


class GatewayError(Exception):
    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        provider: str | None = None,
        model_requested: str | None = None,
        request_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code:
            self.code = code
        self.provider = provider
        self.model_requested = model_requested
        self.request_type = request_type

    @property
    def headers(self) -> dict[str, str]:
        """Headers the error's response carries besides the body."""
        return {}

    def body(self) -> dict[str, Any]:
        return error_body(
            status_code=self.status_code,
            error_type=self.error_type,
            code=self.code,
            message=self.message,
            param=self.param,
            provider=self.provider,
            model_requested=self.model_requested,
            request_type=self.request_type,
        )


class InvalidRequest(GatewayError):
    pass


class AuthenticationRequired(GatewayError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(GatewayError):
    status_code = 403
    error_type = "permission_error"
    code = "forbidden"


class NotFound(GatewayError):
    status_code = 404
    error_type = "not_found_error"
    code = "not_found"


class PayloadTooLarge(GatewayError):
    status_code = 413
    error_type = "invalid_request_error"
    code = "payload_too_large"


class TooManyRequests(GatewayError):
    """429: a limit of the caller's; ``retry_after`` whole seconds until a retry may pass."""

    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = max(1, retry_after)

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ServiceUnavailable(GatewayError):
    status_code = 503
    error_type = "service_unavailable"
    code = "service_unavailable"


WWW_AUTHENTICATE = 'Bearer realm="gateway"'

# DRF's exceptions, by class, mapped to (type, code); anything else keeps its status.
_DRF_ERRORS: dict[type[drf.APIException], tuple[str, str]] = {
    drf.ParseError: ("invalid_request_error", "invalid_json"),
    drf.NotAuthenticated: ("authentication_error", "missing_api_key"),
    drf.AuthenticationFailed: ("authentication_error", "invalid_api_key"),
    drf.PermissionDenied: ("permission_error", "forbidden"),
    drf.NotFound: ("not_found_error", "not_found"),
    drf.MethodNotAllowed: ("invalid_request_error", "method_not_allowed"),
    drf.NotAcceptable: ("invalid_request_error", "not_acceptable"),
    drf.UnsupportedMediaType: ("invalid_request_error", "unsupported_media_type"),
    drf.Throttled: ("rate_limit_error", "rate_limited"),
}


def _first_validation_error(detail: Any, path: str = "") -> tuple[str | None, str]:
    """The first (param, message) of a DRF ValidationError's nested detail."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            child = key if not path else f"{path}.{key}"
            if key == "non_field_errors":
                child = path
            return _first_validation_error(value, child)
    if isinstance(detail, list) and detail:
        first = detail[0]
        if isinstance(first, (dict, list)):
            index = next((i for i, item in enumerate(detail) if item), 0)
            return _first_validation_error(detail[index], f"{path}[{index}]")
        return (path or None), str(first)
    return (path or None), str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's hook: the error response for ``exc``, or None to let it propagate (a 500)."""
    answer = error_answer(exc, context.get("view"))
    if answer is None:
        return None
    body, status_code = answer
    return Response(body, status=status_code, headers=error_headers(status_code, exc))


def error_answer(exc: Exception, view: Any = None) -> tuple[dict[str, Any], int] | None:
    """The error body and status for ``exc``, described with what ``view`` knows; None for a
    bug, which must surface as a 500."""
    answer = _error_answer(exc)
    if answer is not None:
        _describe_request(answer[0]["extra_fields"], view)
        log_error(*answer)
    return answer


def log_error(body: dict[str, Any], status_code: int) -> None:
    """One line per error answered, with the ``event_id`` the client was given."""
    error = body["error"]
    logger.log(
        logging.WARNING if status_code >= 500 else logging.INFO,
        "error answered",
        extra={"status_code": status_code, "code": error["code"], "event_id": body["event_id"]},
    )


def error_headers(status_code: int, exc: Exception | None = None) -> dict[str, str]:
    headers = {"WWW-Authenticate": WWW_AUTHENTICATE} if status_code == 401 else {}
    if isinstance(exc, GatewayError):
        headers.update(exc.headers)
    return headers


def _describe_request(extra_fields: dict[str, Any], view: Any) -> None:
    """Fill what the error left empty with what the view knows the request was about."""
    request_type = getattr(view, "request_type", None)
    model_requested = getattr(view, "model_requested", None)
    if extra_fields["request_type"] is None:
        extra_fields["request_type"] = request_type
    if extra_fields["model_requested"] is None and model_requested:
        extra_fields["model_requested"] = model_requested
        extra_fields["provider"] = extra_fields["provider"] or model_requested.partition("/")[0]


def _error_answer(exc: Exception) -> tuple[dict[str, Any], int] | None:
    if isinstance(exc, GatewayError):
        return exc.body(), exc.status_code
    if isinstance(exc, drf.ValidationError):
        param, message = _first_validation_error(exc.detail)
        body = error_body(
            status_code=400,
            error_type="invalid_request_error",
            code="invalid_parameter",
            message=f"{param}: {message}" if param else message,
            param=param,
        )
        return body, 400
    if isinstance(exc, (Http404, drf.NotFound)):
        body = error_body(
            status_code=404, error_type="not_found_error", code="not_found", message="Not found."
        )
        return body, 404
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge("Request body is too large.").body(), 413
    if isinstance(exc, drf.APIException):
        error_type, code = _DRF_ERRORS.get(type(exc), ("api_error", exc.default_code))
        status_code = exc.status_code
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        body = error_body(
            status_code=status_code, error_type=error_type, code=code, message=str(message)
        )
        return body, status_code
    if isinstance(exc, DatabaseError):
        # The database is the record: without it nothing can be accepted or read.
        logger.warning("database unavailable: %s", type(exc).__name__)
        unavailable = ServiceUnavailable(
            "The gateway's database is unavailable; try again shortly."
        )
        return unavailable.body(), 503
    return None


def json_error_page(
    request: HttpRequest, status_code: int, code: str, message: str
) -> JsonResponse:
    error_type = (
        "not_found_error"
        if status_code == 404
        else ("invalid_request_error" if status_code < 500 else "api_error")
    )
    body = error_body(status_code=status_code, error_type=error_type, code=code, message=message)
    log_error(body, status_code)
    return JsonResponse(body, status=status_code)


def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error_page(request, 400, "bad_request", "Bad request.")


def handler403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error_page(request, 403, "forbidden", "Forbidden.")


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error_page(request, 404, "not_found", "Not found.")


def handler500(request: HttpRequest) -> JsonResponse:
    return json_error_page(request, 500, "internal_error", "Internal server error.")
