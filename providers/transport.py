"""The one HTTP client every provider call goes through.

Adapters speak to a ``Transport``; production uses ``AiohttpTransport`` (one pooled session per
worker process), unit tests pass a fake with the same ``post`` method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import aiohttp


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes


@dataclass(frozen=True)
class Timeouts:
    total: float
    connect: float


class TransportError(Exception):
    """The request got no HTTP response: ``kind`` is ``timeout``, ``connect`` or ``protocol``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class Transport(Protocol):
    async def post(
        self, url: str, *, headers: dict[str, str], body: bytes, timeouts: Timeouts
    ) -> HttpResponse: ...

    async def close(self) -> None: ...


@dataclass
class AiohttpTransport:
    """Pooled keep-alive connections; create and close it inside the event loop that uses it."""

    max_connections: int = 1000
    _session: aiohttp.ClientSession | None = field(default=None, init=False)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=True, raise_for_status=False
            )
        return self._session

    async def post(
        self, url: str, *, headers: dict[str, str], body: bytes, timeouts: Timeouts
    ) -> HttpResponse:
        timeout = aiohttp.ClientTimeout(total=timeouts.total, sock_connect=timeouts.connect)
        try:
            # Never follow a redirect: aiohttp would re-send the prompt, and headers such as
            # Anthropic's x-api-key, to whatever host the Location names. A 3xx comes back as
            # the reply, and the adapter fails the try with it.
            async with self._client().post(
                url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            ) as response:
                payload = await response.read()
                return HttpResponse(
                    status=response.status,
                    headers={k.lower(): v for k, v in response.headers.items()},
                    body=payload,
                )
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise TransportError(
                "timeout", f"upstream did not answer within {timeouts.total:g} s"
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise TransportError(
                "connect", f"cannot connect to upstream: {exc.os_error.strerror or exc}"
            ) from exc
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            raise TransportError(
                "protocol",
                f"upstream closed the connection or sent a broken body: {type(exc).__name__}",
            ) from exc
        except aiohttp.ClientError as exc:
            raise TransportError(
                "protocol", f"upstream request failed: {type(exc).__name__}"
            ) from exc

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
