"""What each operation sends, and what it makes of the answers, written once for both clients.

Each operation is a generator that yields ``Send`` (answered with the ``httpx.Response``, or
with the transport error thrown in) and ``Sleep`` (answered with None), and returns its value.
``Gateway`` drives them with blocking calls, ``AsyncGateway`` with awaits.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from gateway_client.errors import (
    APIError,
    JobCancelledError,
    JobFailedError,
    RateLimitError,
    WaitTimeout,
)
from gateway_client.jobs import ErrorBody, Job
from gateway_client.request_types import RequestType, ResultT
from gateway_client.retries import Clock, RetryPolicy, retry_after

T = TypeVar("T")

# Answers worth asking again: the gateway refused for now (429), or a proxy or the gateway
# was unavailable (only for requests safe to repeat).
THROTTLED = 429
UNAVAILABLE = frozenset({502, 503, 504})


@dataclass(frozen=True)
class Send:
    method: str
    path: str
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Sleep:
    seconds: float


Flow = Generator[Send | Sleep, Any, T]


def exchange(
    send: Send,
    policy: RetryPolicy,
    clock: Clock,
    *,
    safe: bool,
    deadline: float | None = None,
) -> Flow[httpx.Response]:
    """Send until the answer is final: a 429 is always asked again (the gateway ran nothing), a
    502/503/504 or a broken connection only when ``safe``, each after its ``Retry-After`` or the
    backoff; up to ``policy.max_retries`` times, or until ``deadline`` when one is given."""
    retries = 0
    while True:
        failure: httpx.TransportError | None = None
        response: httpx.Response | None = None
        try:
            response = yield send
        except httpx.TransportError as exc:
            if not safe:
                raise
            failure = exc
        if response is not None and not (
            response.status_code == THROTTLED or (safe and response.status_code in UNAVAILABLE)
        ):
            return response
        asked = retry_after(response) if response is not None else None
        delay = (
            policy.throttled.delay(retries) if asked is None else min(asked, policy.max_retry_after)
        )
        out_of_time = deadline is not None and clock.now() + delay > deadline
        if out_of_time or (deadline is None and retries >= policy.max_retries):
            if failure is not None:
                raise failure
            assert response is not None
            return response
        retries += 1
        yield Sleep(delay)


def api_error(response: httpx.Response) -> APIError:
    try:
        data = response.json()
    except ValueError:
        data = None
    error_type = RateLimitError if response.status_code == THROTTLED else APIError
    return error_type(response.status_code, ErrorBody.read(data), response.text)


def read_job(
    request_type: RequestType[ResultT], response: httpx.Response, ok: frozenset[int]
) -> Job[ResultT]:
    if response.status_code not in ok:
        raise api_error(response)
    return Job.read(request_type, response.json())


def submit(
    request_type: RequestType[ResultT],
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    policy: RetryPolicy,
    clock: Clock,
) -> Flow[Job[ResultT]]:
    # With an Idempotency-Key a repeated submit is the same job, so a lost answer may be asked
    # again; without one, only a 429 (nothing accepted) is.
    safe = "Idempotency-Key" in headers
    send = Send("POST", request_type.path, json=dict(body), headers=headers)
    response = yield from exchange(send, policy, clock, safe=safe)
    return read_job(request_type, response, frozenset({200, 202}))


def get(
    request_type: RequestType[ResultT],
    job_id: str,
    policy: RetryPolicy,
    clock: Clock,
) -> Flow[Job[ResultT]]:
    send = Send("GET", request_type.job_path(job_id))
    response = yield from exchange(send, policy, clock, safe=True)
    return read_job(request_type, response, frozenset({200, 202}))


def cancel(
    request_type: RequestType[ResultT],
    job_id: str,
    policy: RetryPolicy,
    clock: Clock,
) -> Flow[Job[ResultT]]:
    send = Send("POST", f"{request_type.job_path(job_id)}/cancel")
    response = yield from exchange(send, policy, clock, safe=False)
    return read_job(request_type, response, frozenset({200}))


def wait(
    request_type: RequestType[ResultT],
    job_id: str,
    policy: RetryPolicy,
    clock: Clock,
    *,
    timeout: float | None,
    on_poll: Callable[[Job[ResultT]], None] | None = None,
) -> Flow[ResultT]:
    """Poll until the job ends: its result, or ``JobFailedError``/``JobCancelledError``; after
    ``timeout`` seconds (None: no limit) ``WaitTimeout``. Between polls, the 202's
    ``Retry-After`` when it has one, else the poll backoff."""
    deadline = None if timeout is None else clock.now() + timeout
    send = Send("GET", request_type.job_path(job_id))
    polls = 0
    while True:
        response = yield from exchange(send, policy, clock, safe=True, deadline=deadline)
        job = read_job(request_type, response, frozenset({200, 202}))
        if on_poll is not None:
            on_poll(job)
        if job.done:
            return outcome(job)
        asked = retry_after(response)
        delay = policy.poll.delay(polls) if asked is None else min(asked, policy.max_retry_after)
        polls += 1
        if deadline is not None:
            remaining = deadline - clock.now()
            if remaining <= 0:
                raise WaitTimeout(job, timeout or 0.0)
            delay = min(delay, remaining)
        yield Sleep(delay)


def outcome(job: Job[ResultT]) -> ResultT:
    if job.status == "failed":
        raise JobFailedError(job)
    if job.status == "cancelled":
        raise JobCancelledError(job)
    assert job.result is not None, f"job {job.id} completed without a result"
    return job.result
