"""``Gateway`` (blocking) and ``AsyncGateway``: the async job API as typed calls."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from gateway_client import config, flows
from gateway_client.jobs import Job
from gateway_client.request_types import RequestType, ResultT
from gateway_client.retries import Clock, RetryPolicy

T = TypeVar("T")

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)  # one HTTP request
DEFAULT_WAIT = 900.0  # seconds a wait polls before WaitTimeout; None waits for ever


class _Options:
    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        retry: RetryPolicy | None,
        clock: Clock | None,
    ) -> None:
        self.base_url = config.base_url(base_url)
        self.headers = {**config.auth_headers(api_key), "User-Agent": "gateway-client"}
        self.retry = retry or RetryPolicy()
        self.clock = clock or Clock()


class Gateway:
    """A blocking client. ``base_url`` and ``api_key`` default to ``GATEWAY_URL`` and
    ``GATEWAY_API_KEY``; ``timeout`` bounds each HTTP request, ``wait``'s own bounds the wait."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._options = _Options(base_url, api_key, retry, clock)
        self._http = httpx.Client(
            base_url=self._options.base_url,
            headers=self._options.headers,
            timeout=timeout,
            transport=transport,
        )

    def submit(
        self,
        request_type: RequestType[ResultT],
        body: Mapping[str, Any],
        *,
        ttl: int | None = None,
        idempotency_key: str | None = None,
        webhook: str | None = None,
    ) -> Job[ResultT]:
        """Submit ``body`` (OpenAI's body for the type, ``model`` as ``provider/model``)."""
        headers = config.submit_headers(ttl=ttl, idempotency_key=idempotency_key, webhook=webhook)
        o = self._options
        return self._drive(flows.submit(request_type, body, headers, o.retry, o.clock))

    def get(self, request_type: RequestType[ResultT], job_id: str) -> Job[ResultT]:
        o = self._options
        return self._drive(flows.get(request_type, job_id, o.retry, o.clock))

    def cancel(self, request_type: RequestType[ResultT], job_id: str) -> Job[ResultT]:
        o = self._options
        return self._drive(flows.cancel(request_type, job_id, o.retry, o.clock))

    def wait(
        self,
        request_type: RequestType[ResultT],
        job_id: str,
        *,
        timeout: float | None = DEFAULT_WAIT,
        on_poll: Callable[[Job[ResultT]], None] | None = None,
    ) -> ResultT:
        """The job's result once it completes; raises ``JobFailedError``, ``JobCancelledError``
        or, after ``timeout`` seconds, ``WaitTimeout``. ``on_poll`` sees every poll's job."""
        o = self._options
        flow = flows.wait(request_type, job_id, o.retry, o.clock, timeout=timeout, on_poll=on_poll)
        return self._drive(flow)

    def run(
        self,
        request_type: RequestType[ResultT],
        body: Mapping[str, Any],
        *,
        timeout: float | None = DEFAULT_WAIT,
        **submit: Any,
    ) -> ResultT:
        """Submit, then wait for the result."""
        job = self.submit(request_type, body, **submit)
        return self.wait(request_type, job.id, timeout=timeout)

    def _drive(self, flow: flows.Flow[T]) -> T:
        answer: Any = None
        failure: httpx.TransportError | None = None
        while True:
            try:
                step = flow.send(answer) if failure is None else flow.throw(failure)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            answer, failure = None, None
            if isinstance(step, flows.Sleep):
                self._options.clock.sleep(step.seconds)
                continue
            try:
                answer = self._http.request(
                    step.method, step.path, json=step.json, headers=step.headers
                )
            except httpx.TransportError as exc:
                failure = exc

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncGateway:
    """``Gateway``'s calls for asyncio: the same arguments, awaited."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._options = _Options(base_url, api_key, retry, clock)
        self._http = httpx.AsyncClient(
            base_url=self._options.base_url,
            headers=self._options.headers,
            timeout=timeout,
            transport=transport,
        )

    async def submit(
        self,
        request_type: RequestType[ResultT],
        body: Mapping[str, Any],
        *,
        ttl: int | None = None,
        idempotency_key: str | None = None,
        webhook: str | None = None,
    ) -> Job[ResultT]:
        headers = config.submit_headers(ttl=ttl, idempotency_key=idempotency_key, webhook=webhook)
        o = self._options
        return await self._drive(flows.submit(request_type, body, headers, o.retry, o.clock))

    async def get(self, request_type: RequestType[ResultT], job_id: str) -> Job[ResultT]:
        o = self._options
        return await self._drive(flows.get(request_type, job_id, o.retry, o.clock))

    async def cancel(self, request_type: RequestType[ResultT], job_id: str) -> Job[ResultT]:
        o = self._options
        return await self._drive(flows.cancel(request_type, job_id, o.retry, o.clock))

    async def wait(
        self,
        request_type: RequestType[ResultT],
        job_id: str,
        *,
        timeout: float | None = DEFAULT_WAIT,
        on_poll: Callable[[Job[ResultT]], None] | None = None,
    ) -> ResultT:
        o = self._options
        flow = flows.wait(request_type, job_id, o.retry, o.clock, timeout=timeout, on_poll=on_poll)
        return await self._drive(flow)

    async def run(
        self,
        request_type: RequestType[ResultT],
        body: Mapping[str, Any],
        *,
        timeout: float | None = DEFAULT_WAIT,
        **submit: Any,
    ) -> ResultT:
        job = await self.submit(request_type, body, **submit)
        return await self.wait(request_type, job.id, timeout=timeout)

    async def _drive(self, flow: flows.Flow[T]) -> T:
        answer: Any = None
        failure: httpx.TransportError | None = None
        while True:
            try:
                step = flow.send(answer) if failure is None else flow.throw(failure)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            answer, failure = None, None
            if isinstance(step, flows.Sleep):
                await self._options.clock.sleep_async(step.seconds)
                continue
            try:
                answer = await self._http.request(
                    step.method, step.path, json=step.json, headers=step.headers
                )
            except httpx.TransportError as exc:
                failure = exc

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
