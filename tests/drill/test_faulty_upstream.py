"""The drill's fake upstream: each fault mode misbehaves as named; other models answer normally."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from bench.upstream import serving
from drill.faulty_upstream import FAULT_COUNTS, faults, make_faulty_app

Post = Callable[[str], Awaitable[tuple[int, str, bytes]]]


def with_upstream(test: Callable[[Post], Awaitable[Any]], hang_seconds: float = 1.0) -> Any:
    """Run ``test(post)`` against the upstream; ``post(model)`` sends one completion."""

    async def main() -> Any:
        app = make_faulty_app(hang_seconds=hang_seconds)
        async with serving(app) as base, aiohttp.ClientSession(base) as session:

            async def post(model: str) -> tuple[int, str, bytes]:
                body = {"model": model, "prompt": "Say hi"}
                timeout = aiohttp.ClientTimeout(total=0.3)
                async with session.post("/v1/completions", json=body, timeout=timeout) as r:
                    return r.status, r.content_type, await r.read()

            outcome = await test(post)
            async with session.get("/__drill/faults") as response:
                counted = await response.json()
            assert counted == app[FAULT_COUNTS]
            return outcome, counted

    return asyncio.run(main())


def test_a_model_without_a_fault_gets_the_benchmark_upstreams_answer():
    (status, content_type, body), counted = with_upstream(lambda post: post("gpt-drill"))
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body)["object"] == "text_completion"
    assert set(counted.values()) == {0}


def test_bad_json_is_a_200_json_reply_that_does_not_parse():
    (status, content_type, body), counted = with_upstream(lambda post: post("fault-bad-json"))
    assert (status, content_type) == (200, "application/json")
    with pytest.raises(ValueError):
        json.loads(body)
    assert counted["fault-bad-json"] == 1


def test_wrong_type_is_a_200_html_page():
    (status, content_type, body), _ = with_upstream(lambda post: post("fault-wrong-type"))
    assert (status, content_type) == (200, "text/html")
    assert body.startswith(b"<html>")


def test_truncated_sends_less_body_than_announced_then_cuts_the_connection():
    with pytest.raises(aiohttp.ClientPayloadError):
        with_upstream(lambda post: post("fault-truncated"))


def test_close_cuts_the_connection_before_any_answer():
    with pytest.raises(aiohttp.ServerDisconnectedError):
        with_upstream(lambda post: post("fault-close"))


def test_hang_answers_nothing_within_a_clients_timeout():
    with pytest.raises(TimeoutError):
        with_upstream(lambda post: post("fault-hang"), hang_seconds=1.0)


def test_the_fault_modes_are_the_five_the_drill_reports():
    assert list(faults(1.0)) == [
        "fault-hang",
        "fault-bad-json",
        "fault-wrong-type",
        "fault-truncated",
        "fault-close",
    ]
