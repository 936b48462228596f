"""How a routing outcome becomes a job's terminal fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.http.errors import error_body
from jobs.models import AsyncJob
from providers.routing import RoutingOutcome


@dataclass(frozen=True)
class Terminal:
    status_code: int
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    served_by: str | None = None  # "provider/model" that produced the result


def from_outcome(job: AsyncJob, outcome: RoutingOutcome) -> Terminal:
    if outcome.result is not None:
        served = outcome.served_by
        served_by = f"{served.provider}/{served.model}" if served else job.model_requested
        return Terminal(status_code=200, result=outcome.result, served_by=served_by)
    failure = outcome.error
    assert failure is not None, "a routing outcome has a result or an error"
    failed = outcome.failed_target
    return Terminal(
        status_code=failure.status_code,
        error=error_body(
            status_code=failure.status_code,
            error_type=failure.error_type,
            code=failure.code,
            message=failure.message,
            param=failure.param,
            is_gateway_error=failure.is_gateway_error,
            provider=failed.provider if failed else job.provider,
            model_requested=job.model_requested,
            request_type=job.request_type,
            extra={"attempts": [attempt.to_dict() for attempt in outcome.attempts]},
        ),
    )


def timed_out(job: AsyncJob, seconds: float) -> Terminal:
    return Terminal(
        status_code=504,
        error=error_body(
            status_code=504,
            error_type="api_error",
            code="job_timeout",
            message=f"The job did not finish within {seconds:g} s.",
            provider=job.provider,
            model_requested=job.model_requested,
            request_type=job.request_type,
        ),
    )
