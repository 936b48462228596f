"""Primary, then each fallback: retry what may pass on a second try, move on from what will not.

The router knows nothing about HTTP; adapters turn every failure into a ``ProviderError`` whose
``transient`` flag is the only thing the retry decision reads.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from providers.base import Adapter, Credentials, ProviderError, Target
from providers.errors import without_secret
from providers.logsafe import logsafe
from providers.transport import Timeouts, Transport

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Tries per target are ``1 + retries``; ``max_delay`` also caps a provider's Retry-After,
    so one slow provider cannot park a worker slot for minutes."""

    retries: int = 2
    base_delay: float = 0.5
    max_delay: float = 20.0

    def __post_init__(self) -> None:
        if self.retries < 0 or self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("retry policy values must not be negative")

    def delay(self, try_index: int, retry_after: float | None) -> float:
        """Seconds to wait after failed try ``try_index`` (0 for the first try)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        # Full jitter: many workers hit by the same outage spread their retries out instead of
        # returning in lockstep.
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**try_index))


@dataclass(frozen=True)
class Attempt:
    """One try of one target, as listed in a failed job's ``extra_fields``; ``seconds`` is how
    long the call took (None when no call was made), for the metrics, not the job's error."""

    provider: str
    model: str
    status_code: int | None
    code: str | None
    retryable: bool
    seconds: float | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        listed = asdict(self)
        del listed["seconds"]
        return listed


@dataclass
class RoutingOutcome:
    result: dict[str, Any] | None
    served_by: Target | None
    error: ProviderError | None
    failed_target: Target | None
    attempts: list[Attempt] = field(default_factory=list)


async def route_request(
    targets: Sequence[Target],
    params: dict[str, Any],
    *,
    transport: Transport,
    credentials: Mapping[str, Credentials | None],
    adapters: Mapping[str, Adapter],
    policy: RetryPolicy,
    timeouts: Timeouts,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> RoutingOutcome:
    """Serve ``params`` from the first target that succeeds, else report the primary's error."""
    if not targets:
        raise ValueError("route_request needs at least one target")
    attempts: list[Attempt] = []
    primary_error: ProviderError | None = None
    for target in targets:
        outcome = await _serve_from(
            target,
            params,
            transport=transport,
            credentials=credentials.get(target.provider),
            adapters=adapters,
            policy=policy,
            timeouts=timeouts,
            sleep=sleep,
            attempts=attempts,
        )
        if not isinstance(outcome, ProviderError):
            return RoutingOutcome(outcome, target, None, None, attempts)
        if primary_error is None:
            primary_error = outcome
    # The caller asked for the primary; fallbacks are a best effort, so its error is the answer.
    return RoutingOutcome(None, None, primary_error, targets[0], attempts)


async def _serve_from(
    target: Target,
    params: dict[str, Any],
    *,
    transport: Transport,
    credentials: Credentials | None,
    adapters: Mapping[str, Adapter],
    policy: RetryPolicy,
    timeouts: Timeouts,
    sleep: Callable[[float], Awaitable[None]],
    attempts: list[Attempt],
) -> dict[str, Any] | ProviderError:
    """Try one target up to ``1 + retries`` times; the result, or the last error."""
    if credentials is None:
        error = _gateway_error(
            f"provider '{target.provider}' is not configured",
            status_code=400,
            error_type="invalid_request_error",
            code="provider_not_configured",
        )
        attempts.append(Attempt(target.provider, target.model, None, error.code, False))
        return error
    adapter = adapters.get(credentials.protocol)
    if adapter is None:
        error = _gateway_error(
            f"provider '{target.provider}' uses protocol '{credentials.protocol}', "
            "which this gateway cannot speak",
            status_code=500,
            error_type="api_error",
            code="unsupported_provider_protocol",
        )
        attempts.append(Attempt(target.provider, target.model, None, error.code, False))
        return error

    for try_index in range(policy.retries + 1):
        started = time.monotonic()
        try:
            result = await _serve(adapter, target, params, transport, credentials, timeouts)
        except ProviderError as exc:
            error = exc
        else:
            took = time.monotonic() - started
            attempts.append(Attempt(target.provider, target.model, 200, None, False, took))
            return result
        took = time.monotonic() - started
        attempts.append(
            Attempt(
                target.provider,
                target.model,
                error.status_code,
                error.code,
                error.transient,
                took,
            )
        )
        # The target comes from the caller and the code from the provider's reply.
        logger.warning(
            "try failed: target=%s try=%d status=%s code=%s transient=%s",
            logsafe(target),
            try_index + 1,
            error.status_code,
            logsafe(error.code),
            error.transient,
        )
        if not error.transient or try_index == policy.retries:
            break
        await sleep(policy.delay(try_index, error.retry_after))
    return error


async def _serve(
    adapter: Adapter,
    target: Target,
    params: dict[str, Any],
    transport: Transport,
    credentials: Credentials,
    timeouts: Timeouts,
) -> dict[str, Any]:
    try:
        result = await adapter.serve(transport, credentials, target.model, params, timeouts)
    except ProviderError:
        raise
    except Exception:
        # The one broad catch, on purpose: a reply shaped in a way no adapter foresaw must fail
        # this job, not kill the worker loop carrying hundreds of others. It is permanent because
        # the same reply would break the adapter the same way. Adapters never put credentials in
        # exception messages, and only the target is logged alongside the traceback.
        logger.exception(
            "adapter %s failed unexpectedly for %s",
            credentials.protocol,
            logsafe(target),
        )
        raise _gateway_error(
            "the gateway could not process the provider's reply",
            status_code=502,
            error_type="api_error",
            code="internal_adapter_error",
        ) from None
    # Error replies are redacted as they are read; a provider may echo its key in a success too.
    return dict(without_secret(result, credentials.api_key))


def _gateway_error(message: str, *, status_code: int, error_type: str, code: str) -> ProviderError:
    return ProviderError(
        message,
        status_code=status_code,
        error_type=error_type,
        code=code,
        transient=False,
        is_gateway_error=True,
    )
