"""What the client raises: the gateway's refusals, failed and cancelled jobs, waits run out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway_client.jobs import ErrorBody, Job


class GatewayClientError(Exception):
    """Every error of this package."""


class APIError(GatewayClientError):
    """The gateway answered a request with an error status (after any retries)."""

    def __init__(self, status_code: int, body: ErrorBody | None, text: str) -> None:
        self.status_code = status_code
        self.body = body  # the gateway's error shape; None when the answer was something else
        self.text = text
        message = body.error.message if body is not None else text[:200]
        super().__init__(f"HTTP {status_code}: {message}")

    @property
    def code(self) -> str | None:
        return self.body.error.code if self.body is not None else None

    @property
    def param(self) -> str | None:
        return self.body.error.param if self.body is not None else None


class RateLimitError(APIError):
    """Still 429 after the retries the client allows."""


class JobFailedError(GatewayClientError):
    """The job ended ``failed``; ``error`` is the gateway's error shape."""

    def __init__(self, job: Job[Any]) -> None:
        assert job.error is not None
        self.job = job
        self.error: ErrorBody = job.error
        super().__init__(
            f"job {job.id} failed (HTTP {job.status_code}, {job.error.error.code}): "
            f"{job.error.error.message}"
        )


class JobCancelledError(GatewayClientError):
    """The job was cancelled before it finished."""

    def __init__(self, job: Job[Any]) -> None:
        self.job = job
        super().__init__(f"job {job.id} was cancelled")


class WaitTimeout(GatewayClientError, TimeoutError):
    """The job had not finished when the wait's time ran out; ``job`` is the last poll's answer."""

    def __init__(self, job: Job[Any], seconds: float) -> None:
        self.job = job
        super().__init__(f"job {job.id} still {job.status} after {seconds:g} s")
