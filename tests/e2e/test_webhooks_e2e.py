"""Webhooks over real HTTP with a real worker: a job's end arrives at the receiver, signed per
Standard Webhooks, and a receiver that answers 503 gets it again."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from standardwebhooks import Webhook

from harness.procs import free_port
from harness.upstream import reply_text

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.e2e.conftest import Gateway, GatewayClient

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("gateway")]

DELIVERY_TIMEOUT = 60.0


class Receiver:
    """An HTTP server on a free port, on its own thread: answers each POST with the next of
    ``statuses`` (the last one repeats) and keeps what it received."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        status = self.statuses[min(len(self.received), len(self.statuses)) - 1]
        return web.Response(status=status)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def __enter__(self) -> Receiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def wait_for(self, count: int, gateway: Gateway) -> None:
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while len(self.received) < count:
            gateway.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.received)} of {count} deliveries arrived")
            time.sleep(0.1)


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    statuses = getattr(request, "param", [200])
    with Receiver(statuses) as running:
        yield running


def endpoint(gateway: Gateway, url: str) -> tuple[str, str]:
    """A new endpoint made with the real command in the stack's environment: (name, secret)."""
    name = f"hook-{uuid.uuid4().hex[:8]}"
    out = gateway.stack.manage("create_webhook_endpoint", "--name", name, "--url", url)
    return name, out.rstrip("\n").splitlines()[-1]


def test_a_completed_job_is_delivered_signed(
    api: GatewayClient,
    make_key: Callable[..., str],
    gateway: Gateway,
    receiver: Receiver,
) -> None:
    key = make_key()
    name, secret = endpoint(gateway, receiver.url)
    prompt = f"Say hi {uuid.uuid4().hex}"

    job_id = api.submit_ok(
        key,
        {"model": "openai/ok", "prompt": prompt, "max_tokens": 5},
        headers={"x-bf-async-webhook": name},
    )
    polled = api.poll_until_done(key, job_id).json()
    receiver.wait_for(1, gateway)

    headers, body = receiver.received[0]
    payload: dict[str, Any] = Webhook(secret).verify(body, headers)
    assert payload["type"] == "async_job.completed"
    assert payload["data"] == {**polled, "request_type": "text_completion"}
    assert payload["data"]["result"]["choices"][0]["text"] == reply_text(prompt)
    time.sleep(1.5)  # a delivered notice is not sent again
    assert len(receiver.received) == 1


@pytest.mark.parametrize("receiver", [[503, 200]], indirect=True)
def test_a_receiver_that_answers_503_gets_the_notice_again(
    api: GatewayClient,
    make_key: Callable[..., str],
    gateway: Gateway,
    receiver: Receiver,
) -> None:
    key = make_key()
    name, secret = endpoint(gateway, receiver.url)

    job_id = api.submit_ok(
        key,
        {"model": "openai/ok", "prompt": "Say hi", "max_tokens": 5},
        headers={"x-bf-async-webhook": name},
    )
    receiver.wait_for(2, gateway)

    first, again = receiver.received[:2]
    assert first[0]["webhook-id"] == again[0]["webhook-id"]
    for headers, body in receiver.received[:2]:
        assert Webhook(secret).verify(body, headers)["data"]["id"] == job_id


def test_an_unknown_webhook_is_refused_at_submit(
    api: GatewayClient, make_key: Callable[..., str]
) -> None:
    response = api.submit(
        make_key(),
        {"model": "openai/ok", "prompt": "Say hi", "max_tokens": 5},
        headers={"x-bf-async-webhook": "no-such-hook"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "x-bf-async-webhook"
    assert response.json()["error"]["code"] == "unknown_webhook"
