"""Delivering notices: claimed under a lease, signed, POSTed without following redirects,
retried with backoff on transient failures for 24 hours, failed at once on a refusal."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from django.db import connection
from django.utils import timezone
from standardwebhooks import Webhook

from gateway.access.principals import Principal
from jobs.models import JobStatus
from jobs.services import cancel_job
from jobs.webhooks import sending, services
from jobs.webhooks.deliverer import WebhookDeliverer
from jobs.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from jobs.webhooks.services import add_delivery, backoff, enqueue_deliveries
from tests.factories import AsyncJobFactory

pytestmark = pytest.mark.django_db

Handler = Callable[[web.Request], Any]


class Receiver:
    """A local HTTP server, on its own thread, answering each request with ``handler``; keeps
    what it got."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append((request.path, dict(request.headers), await request.read()))
        return await self.handler(request)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def __enter__(self) -> Receiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


async def _send(batch: list[services.Outgoing]) -> list[services.Attempt]:
    async with aiohttp.ClientSession() as session:
        return await sending.send_all(session, batch)


def run_round(endpoint: WebhookEndpoint, handler: Handler) -> Receiver:
    """Point ``endpoint`` at a fresh receiver and run one delivery round against it."""
    with Receiver(handler) as receiver:
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            url=f"http://127.0.0.1:{receiver.port}/in"
        )
        batch = services.claim_due_deliveries(10)
        services.record_attempts(asyncio.run(_send(batch)), jitter=1.0)
    return receiver


def answer(status: int, body: str = "", **headers: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, text=body, headers=headers)

    return handler


def due_delivery(endpoint: WebhookEndpoint, status: str = JobStatus.COMPLETED) -> WebhookDelivery:
    now = timezone.now()
    job = AsyncJobFactory(
        status=status,
        completed_at=now,
        expires_at=now + timedelta(hours=1),
        status_code=200,
        result={"object": "text_completion", "choices": [{"text": "hi"}]},
    )
    add_delivery(job, endpoint)
    enqueue_deliveries([job.pk])
    return WebhookDelivery.objects.get(job_id=job.pk)


def reloaded(delivery: WebhookDelivery) -> WebhookDelivery:
    return WebhookDelivery.objects.get(pk=delivery.pk)


def test_a_2xx_delivers_a_notice_signed_per_standard_webhooks(endpoint):
    delivery = due_delivery(endpoint)

    receiver = run_round(endpoint, answer(204))

    [(path, headers, body)] = receiver.received
    assert path == "/in"
    payload = Webhook(endpoint.secret).verify(body, headers)
    assert headers["webhook-id"] == str(delivery.id)
    assert payload["type"] == "async_job.completed"
    assert payload["data"]["id"] == str(delivery.job_id)
    assert payload["data"]["status"] == "completed"
    assert payload["data"]["request_type"] == "text_completion"
    assert payload["data"]["result"]["choices"] == [{"text": "hi"}]
    assert payload["timestamp"].endswith("Z")
    done = reloaded(delivery)
    assert done.status == DeliveryStatus.DELIVERED
    assert done.delivered_at is not None
    assert (done.attempts, done.last_status_code, done.last_error) == (1, 204, "")


def test_a_failed_job_is_an_async_job_failed_notice(endpoint):
    due_delivery(endpoint, status=JobStatus.FAILED)
    receiver = run_round(endpoint, answer(200))
    assert json.loads(receiver.received[0][2])["type"] == "async_job.failed"


def test_a_cancelled_job_is_an_async_job_cancelled_notice(endpoint):
    job = AsyncJobFactory(status=JobStatus.PENDING)
    add_delivery(job, endpoint)
    principal = Principal(virtual_key=None, is_admin=True)

    cancel_job(str(job.pk), principal, job.request_type)

    assert WebhookDelivery.objects.get(job_id=job.pk).status == DeliveryStatus.PENDING
    receiver = run_round(endpoint, answer(200))
    notice = json.loads(receiver.received[0][2])
    assert (notice["type"], notice["data"]["status"]) == ("async_job.cancelled", "cancelled")


def test_a_signature_made_with_another_secret_does_not_verify(endpoint):
    due_delivery(endpoint)
    receiver = run_round(endpoint, answer(200))
    _, headers, body = receiver.received[0]
    other = services.new_secret()
    with pytest.raises(Exception, match="signature"):
        Webhook(other).verify(body, headers)


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
def test_a_transient_answer_is_retried_later_with_backoff(endpoint, status):
    delivery = due_delivery(endpoint)

    before = timezone.now()
    run_round(endpoint, answer(status, "busy \x00\x1b[31m now"))

    retry = reloaded(delivery)
    assert retry.status == DeliveryStatus.PENDING
    assert retry.attempts == 1 and retry.last_status_code == status
    assert retry.last_error.startswith(f"HTTP {status}")
    assert "\x00" not in retry.last_error and "\x1b" not in retry.last_error
    assert retry.next_attempt_at is not None
    assert retry.next_attempt_at >= before + timedelta(seconds=5)
    assert services.claim_due_deliveries(10) == []  # not due before its time


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
def test_a_refusal_fails_the_delivery_at_once(endpoint, status):
    delivery = due_delivery(endpoint)
    run_round(endpoint, answer(status, "no such hook"))
    refused = reloaded(delivery)
    assert refused.status == DeliveryStatus.FAILED
    assert refused.last_status_code == status
    assert refused.last_error == f"HTTP {status}: no such hook"


def test_a_redirect_is_never_followed_and_is_retried(endpoint):
    delivery = due_delivery(endpoint)

    receiver = run_round(endpoint, answer(302, Location="/elsewhere"))

    assert [path for path, _, _ in receiver.received] == ["/in"]
    redirected = reloaded(delivery)
    assert redirected.status == DeliveryStatus.PENDING
    assert redirected.last_status_code == 302
    assert "redirects are not followed" in redirected.last_error


def test_a_refused_connection_is_retried(endpoint):
    delivery = due_delivery(endpoint)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(url="http://127.0.0.1:9/in")

    services.record_attempts(asyncio.run(_send(services.claim_due_deliveries(10))))

    retry = reloaded(delivery)
    assert retry.status == DeliveryStatus.PENDING
    assert retry.last_status_code is None
    assert retry.last_error.startswith("connection error")


def test_the_backoff_doubles_from_five_seconds_to_an_hour_with_jitter():
    assert [backoff(n, 1.0).total_seconds() for n in range(1, 6)] == [5, 10, 20, 40, 80]
    assert backoff(20, 1.0) == timedelta(hours=1)
    assert backoff(3, 0.5) == timedelta(seconds=10)


def test_transient_failures_are_retried_for_24_hours_then_the_delivery_fails(endpoint):
    delivery = due_delivery(endpoint)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        due_since=timezone.now() - timedelta(hours=23, minutes=59)
    )
    run_round(endpoint, answer(503))
    assert reloaded(delivery).status == DeliveryStatus.PENDING

    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        due_since=timezone.now() - timedelta(hours=24), next_attempt_at=timezone.now()
    )
    run_round(endpoint, answer(503))
    given_up = reloaded(delivery)
    assert given_up.status == DeliveryStatus.FAILED
    assert given_up.attempts == 2


def test_a_claim_whose_lease_lapsed_is_delivered_again(endpoint):
    delivery = due_delivery(endpoint)
    [first] = services.claim_due_deliveries(10)  # then the worker is killed
    assert services.claim_due_deliveries(10) == []  # held while the lease runs

    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    [again] = services.claim_due_deliveries(10)

    assert again.id == first.id == delivery.id
    assert (first.attempt, again.attempt) == (1, 2)
    assert again.payload == first.payload
    # The dead worker's late answer no longer counts; the live claim's does.
    services.record_attempts([services.Attempt(first.id, first.attempt, delivered=True)])
    assert reloaded(delivery).status == DeliveryStatus.SENDING
    services.record_attempts([services.Attempt(again.id, again.attempt, delivered=True)])
    assert reloaded(delivery).status == DeliveryStatus.DELIVERED


def test_an_inactive_endpoints_delivery_fails_without_a_request(endpoint):
    delivery = due_delivery(endpoint)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_active=False)
    assert services.claim_due_deliveries(10) == []
    assert reloaded(delivery).status == DeliveryStatus.FAILED
    assert reloaded(delivery).last_error == "the endpoint is inactive"


def test_resend_makes_finished_deliveries_due_now(endpoint):
    delivery = due_delivery(endpoint)
    run_round(endpoint, answer(404))
    assert reloaded(delivery).status == DeliveryStatus.FAILED

    assert services.resend_deliveries([delivery.pk]) == 1

    receiver = run_round(endpoint, answer(200))
    assert len(receiver.received) == 1
    assert reloaded(delivery).status == DeliveryStatus.DELIVERED


@pytest.mark.django_db(transaction=True)
def test_the_deliverer_round_claims_sends_and_records(endpoint):
    delivery = due_delivery(endpoint)

    async def db_call(fn: Callable[..., Any], *args: Any) -> Any:
        def on_a_thread() -> Any:  # as the engine's database threads run them
            try:
                return fn(*args)
            finally:
                connection.close()

        return await asyncio.to_thread(on_a_thread)

    async def one_round() -> int:
        async with aiohttp.ClientSession() as session:
            return await WebhookDeliverer(db_call).deliver_due(session)

    with Receiver(answer(200)) as receiver:
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            url=f"http://127.0.0.1:{receiver.port}/in"
        )
        assert asyncio.run(one_round()) == 1
    assert len(receiver.received) == 1
    assert reloaded(delivery).status == DeliveryStatus.DELIVERED
