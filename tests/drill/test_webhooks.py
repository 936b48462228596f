"""The drill's webhook receiver: it verifies and records every notice, holds its answers until
released, and counts each job's notices at least once, duplicates apart."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import aiohttp
from standardwebhooks import Webhook

from drill.services import Arrivals, WebhookReceiver
from harness.procs import free_port

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def arrivals(*posts: tuple[str, str | None, float]) -> Arrivals:
    return Arrivals(posts)


def test_each_job_notified_once_is_delivered_with_no_duplicates():
    summary = arrivals(("w1", "j1", 1.0), ("w2", "j2", 1.1)).summary(["j1", "j2"])
    assert summary["jobs_notified"] == 2
    assert (summary["unnotified"], summary["duplicates"], summary["invalid_signatures"]) == (
        0,
        0,
        0,
    )


def test_a_notice_sent_again_under_its_webhook_id_is_a_duplicate_not_a_loss():
    summary = arrivals(("w1", "j1", 1.0), ("w1", "j1", 61.0), ("w2", "j2", 1.1)).summary(
        ["j1", "j2"]
    )
    assert (summary["received"], summary["jobs_notified"], summary["unnotified"]) == (3, 2, 0)
    assert (summary["duplicates"], summary["jobs_notified_more_than_once"]) == (1, 1)
    assert summary["jobs_with_several_webhook_ids"] == 0


def test_a_notice_that_did_not_verify_notifies_no_job():
    summary = arrivals(("w1", None, 1.0)).summary(["j1"])
    assert summary["invalid_signatures"] == 1
    assert (summary["jobs_notified"], summary["unnotified"], summary["unnotified_ids"]) == (
        0,
        1,
        ["j1"],
    )


def test_two_webhook_ids_for_one_job_and_notices_of_other_jobs_are_counted():
    summary = arrivals(("w1", "j1", 1.0), ("w9", "j1", 2.0), ("w3", "j3", 2.0)).summary(["j1"])
    assert summary["jobs_with_several_webhook_ids"] == 1
    assert summary["notices_of_unknown_jobs"] == 1


def test_arrived_again_counts_the_held_ids_that_came_back_after_the_kill():
    seen = arrivals(("w1", "j1", 1.0), ("w2", "j2", 1.0), ("w1", "j1", 70.0))
    assert seen.arrived_again(["w1", "w2"], after=10.0) == 1
    assert seen.unnotified(["j1", "j2", "j3"]) == ["j3"]


def signed(webhook_id: str, job_id: str, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"type": "async_job.completed", "data": {"id": job_id}})
    now = datetime.now(UTC)
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, now, body),
        "content-type": "application/json",
    }
    return body.encode(), headers


async def post(receiver: WebhookReceiver, body: bytes, headers: dict[str, str]) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(receiver.url, data=body, headers=headers) as response,
    ):
        return response.status


async def until_held(receiver: WebhookReceiver) -> None:
    while not receiver.held:
        await asyncio.sleep(0.01)


def test_the_receiver_holds_a_verified_notice_until_released_then_answers_200():
    async def scenario() -> tuple[list[str], int, list[str], Arrivals]:
        async with WebhookReceiver(SECRET, free_port()) as receiver:
            sending = asyncio.create_task(post(receiver, *signed("msg_1", "job-1")))
            await asyncio.wait_for(until_held(receiver), timeout=5)
            await asyncio.sleep(0.2)
            held = list(receiver.held)
            assert not sending.done()
            receiver.release()
            status = await sending
            return held, status, receiver.held, receiver.arrivals

    held, status, held_after, seen = asyncio.run(scenario())
    assert (held, status, held_after) == (["msg_1"], 200, [])
    assert [(webhook_id, job_id) for webhook_id, job_id, _ in seen] == [("msg_1", "job-1")]


def test_the_receiver_answers_400_to_a_notice_signed_with_another_secret():
    other = "whsec_" + "QmFkU2VjcmV0Rm9yVGhlRHJpbGxUZXN0cw=="

    async def scenario() -> tuple[int, Arrivals]:
        async with WebhookReceiver(SECRET, free_port()) as receiver:
            receiver.release()
            return await post(receiver, *signed("msg_2", "job-2", other)), receiver.arrivals

    status, seen = asyncio.run(scenario())
    assert status == 400
    assert [(webhook_id, job_id) for webhook_id, job_id, _ in seen] == [("msg_2", None)]
    assert seen.summary(["job-2"])["invalid_signatures"] == 1
