"""What every provider adapter shares: the call's inputs and the error it raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from providers.transport import Timeouts, Transport


@dataclass(frozen=True)
class Target:
    """One ``provider/model`` the router may try."""

    provider: str
    model: str

    @classmethod
    def parse(cls, value: str) -> Target:
        """Split at the first ``/``: ``openrouter/meta/llama-3`` -> (openrouter, meta/llama-3)."""
        provider, _, model = value.partition("/")
        return cls(provider=provider, model=model)

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(frozen=True)
class Credentials:
    """Where and how to call one provider: its protocol, base URL and one chosen API key."""

    provider: str
    protocol: str  # "openai" or "anthropic"
    base_url: str
    api_key: str = field(repr=False)


class ProviderError(Exception):
    """A call that did not produce a result.

    ``transient`` errors (429, 5xx, timeouts, connection errors) are worth retrying on the same
    target; permanent ones move the router on to the next target at once. ``is_gateway_error`` is
    False when the error relays what the provider said, True when the gateway itself decided
    (connection failure, unreadable reply, missing credentials).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        error_type: str,
        code: str,
        transient: bool,
        is_gateway_error: bool,
        retry_after: float | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.error_type = error_type
        self.code = code
        self.transient = transient
        self.is_gateway_error = is_gateway_error
        self.retry_after = retry_after
        self.param = param


class Adapter(Protocol):
    """Serves one request type on one provider protocol.

    ``refusal`` runs at submit, before the job is accepted, so a request this provider cannot
    carry is a 400 to the caller rather than a failed job later; it is pure and does no I/O.
    ``serve`` makes the call and returns the OpenAI result object of the type as a dict.
    ``fans_out`` tells the submit's bound on a job's upstream calls how many one try makes.
    """

    # True when one try makes a call per choice (each prompt times ``n``) rather than one call.
    fans_out: bool

    def refusal(self, params: dict[str, Any]) -> ProviderError | None: ...

    async def serve(
        self,
        transport: Transport,
        credentials: Credentials,
        model: str,
        params: dict[str, Any],
        timeouts: Timeouts,
    ) -> dict[str, Any]: ...


def unsupported(param: str, message: str) -> ProviderError:
    """What ``refusal`` returns: the request names a parameter this provider cannot honour."""
    return ProviderError(
        message,
        status_code=400,
        error_type="invalid_request_error",
        code="unsupported_parameter",
        transient=False,
        is_gateway_error=True,
        param=param,
    )
