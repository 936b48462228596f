"""The tools' load shapes: counting, stopping rules, percentiles, and following jobs to the end."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from harness.load import (
    LoadResult,
    closed_loop,
    open_loop,
    percentiles,
    run,
    submit_and_follow,
)
from harness.procs import free_port
from harness.upstream import FakeUpstream

T = TypeVar("T")


def status_echo_app() -> web.Application:
    """Answers with the status the request body names (``b"202"`` -> 202)."""

    async def echo(request: web.Request) -> web.Response:
        status = int(await request.read())
        return web.json_response({"status": status}, status=status)

    app = web.Application()
    app.router.add_post("/echo", echo)
    return app


def even_accepted(index: int) -> bytes:
    return b"202" if index % 2 == 0 else b"500"


def run_against(app: web.Application, load: Callable[[str], Awaitable[T]]) -> T:
    async def main() -> T:
        async with TestServer(app, host="127.0.0.1") as server:
            return await load(str(server.make_url("")).rstrip("/"))

    return run(main())


# --- percentiles --------------------------------------------------------------------------------
def test_percentiles_of_one_to_a_hundred() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # unsorted on purpose
    assert percentiles(values) == {
        "p50": 50.0,
        "p90": 90.0,
        "p99": 99.0,
        "max": 100.0,
        "mean": 50.5,
        "n": 100,
    }


def test_percentiles_use_the_nearest_rank() -> None:
    result = percentiles([10.0, 20.0, 30.0, 40.0])
    assert (result["p50"], result["p90"], result["p99"], result["max"]) == (20, 40, 40, 40)
    assert result["mean"] == 25


def test_percentiles_of_nothing_are_zero() -> None:
    assert percentiles([]) == {"p50": 0, "p90": 0, "p99": 0, "max": 0, "mean": 0, "n": 0}


# --- closed loop --------------------------------------------------------------------------------
def test_closed_loop_sends_total_requests_and_counts_statuses() -> None:
    seen: list[tuple[int, bytes]] = []
    result = run_against(
        status_echo_app(),
        lambda base: closed_loop(
            f"{base}/echo",
            body=even_accepted,
            headers={"Content-Type": "text/plain"},
            connections=8,
            total=100,
            on_response=lambda n, status, body: seen.append((status, body)),
        ),
    )
    assert result.requests == 100
    assert result.statuses == {202: 50, 500: 50}
    assert (result.ok, result.errors) == (50, 0)
    assert result.rate == pytest.approx(50 / result.seconds)
    assert result.latency_ms["n"] == 50
    assert 0 < result.latency_ms["p50"] <= result.latency_ms["p99"] <= result.latency_ms["max"]
    assert len(seen) == 100
    assert (202, b'{"status": 202}') in seen


def test_closed_loop_runs_for_a_duration_after_the_warmup() -> None:
    responses = 0

    def count(n: int, status: int, body: bytes) -> None:
        nonlocal responses
        responses += 1

    with FakeUpstream(latency_ms=10) as upstream:
        result = run(
            closed_loop(
                f"{upstream.base_url}/v1/completions",
                body=b'{"model": "m"}',
                headers={"Content-Type": "application/json"},
                connections=4,
                duration=0.4,
                warmup=0.2,
                on_response=count,
            )
        )
    assert 0.4 <= result.seconds < 0.8
    assert result.statuses.keys() == {200}
    assert result.ok == result.requests
    # 4 connections, ~10 ms each: about 160 counted; the warm-up's responses are extra.
    assert 40 <= result.requests <= 170
    assert responses > result.requests
    assert result.latency_ms["p50"] >= 10


def test_closed_loop_keeps_the_given_number_of_connections_busy() -> None:
    with FakeUpstream(latency_ms=50) as upstream:
        url = f"{upstream.base_url}/v1/responses"
        run(closed_loop(url, body=b"{}", connections=16, total=48))
        stats = upstream.stats()
    assert (stats["peak_in_flight"], stats["requests"]) == (16, 48)


def test_closed_loop_counts_transport_errors() -> None:
    url = f"http://127.0.0.1:{free_port()}/nothing-listens"
    result = run(closed_loop(url, body=b"{}", connections=2, total=6))
    assert result.errors == 6
    assert (result.requests, result.ok, result.rate, result.statuses) == (6, 0, 0, {})


def test_closed_loop_reports_progress() -> None:
    reports: list[int] = []
    run_against(
        status_echo_app(),
        lambda base: closed_loop(
            f"{base}/echo", body=b"200", connections=2, total=10, progress=reports.append
        ),
    )
    assert reports[-1] == 10


def test_closed_loop_needs_a_stopping_rule() -> None:
    with pytest.raises(ValueError, match="duration or a total"):
        asyncio.run(closed_loop("http://127.0.0.1:9/", body=None))


# --- open loop ----------------------------------------------------------------------------------
def test_open_loop_starts_requests_on_schedule_whatever_the_latency() -> None:
    with FakeUpstream(latency_ms=100) as upstream:
        result = run(
            open_loop(
                f"{upstream.base_url}/v1/completions",
                rate=200,
                duration=0.5,
                body=b'{"model": "m"}',
                headers={"Content-Type": "application/json"},
            )
        )
        peak = upstream.stats()["peak_in_flight"]
    assert result.requests == 100
    assert result.statuses == {200: 100}
    # 200/s with 100 ms each: about 20 in flight; a closed loop would have waited for each.
    assert peak >= 10
    assert 0.5 <= result.seconds < 1.2
    assert result.latency_ms["p50"] >= 100


def test_open_loop_counts_statuses_and_calls_back() -> None:
    seen: list[int] = []
    result = run_against(
        status_echo_app(),
        lambda base: open_loop(
            f"{base}/echo",
            rate=100,
            duration=0.2,
            body=even_accepted,
            on_response=lambda n, status, body: seen.append(status),
        ),
    )
    assert result.statuses == {202: 10, 500: 10}
    assert result.ok == 10
    assert sorted(seen) == [202] * 10 + [500] * 10


def test_load_result_to_json_is_plain_json() -> None:
    result = LoadResult(
        requests=3,
        statuses={500: 1, 202: 2},
        errors=0,
        seconds=1.5,
        ok=2,
        rate=2 / 1.5,
        latency_ms=percentiles([1.0, 2.0]),
    )
    data = result.to_json()
    assert data["statuses"] == {"202": 2, "500": 1}
    assert data["latency_ms"]["max"] == 2.0
    assert data["rate"] == pytest.approx(1.3333, rel=1e-3)


def test_the_url_can_change_with_each_request() -> None:
    paths: list[str] = []

    async def record(request: web.Request) -> web.Response:
        paths.append(request.path)
        return web.json_response({}, status=200)

    app = web.Application()
    app.router.add_get("/jobs/{n}", record)
    result = run_against(
        app,
        lambda base: closed_loop(
            lambda i: f"{base}/jobs/{i}", method="GET", connections=1, total=3
        ),
    )
    assert result.ok == 3
    assert paths == ["/jobs/0", "/jobs/1", "/jobs/2"]


# --- following jobs to the end --------------------------------------------------------------------
def job_api(polls_to_finish: int) -> tuple[web.Application, dict[str, int]]:
    """The gateway's protocol: a submit answers 202 with an id; a poll answers 202 while the job
    is pending, then 200 with its final status (every third job fails)."""
    polls: dict[str, int] = {}

    async def submit(request: web.Request) -> web.Response:
        job_id = f"job-{len(polls)}"
        polls[job_id] = 0
        return web.json_response({"id": job_id, "status": "pending"}, status=202)

    async def poll(request: web.Request) -> web.Response:
        job_id = request.match_info["id"]
        if job_id not in polls:
            return web.json_response({"error": "no such job"}, status=404)
        polls[job_id] += 1
        if polls[job_id] < polls_to_finish:
            return web.json_response({"id": job_id, "status": "processing"}, status=202)
        final = "failed" if int(job_id.split("-")[1]) % 3 == 0 else "completed"
        return web.json_response({"id": job_id, "status": final})

    app = web.Application()
    app.router.add_post("/jobs", submit)
    app.router.add_get("/jobs/{id}", poll)
    return app, polls


def follow(app: web.Application, **options: Any) -> dict[str, Any]:
    return run_against(
        app,
        lambda base: submit_and_follow(
            f"{base}/jobs",
            b"{}",
            poll_url=lambda job_id: f"{base}/jobs/{job_id}",
            headers={},
            **options,
        ),
    )


def test_every_job_is_polled_until_its_final_status_and_no_further() -> None:
    app, polls = job_api(polls_to_finish=3)
    result = follow(app, jobs=30, connections=8, poll_interval=0.02)
    assert {k: result[k] for k in ("submitted", "completed", "failed", "lost")} == {
        "submitted": 30,
        "completed": 20,
        "failed": 10,
        "lost": 0,
    }
    assert set(polls.values()) == {3}
    assert result["polls"] == 90
    assert result["poll_errors"] == result["submit_errors"] == 0  # a 202 while pending is fine
    assert result["submit_statuses"] == {"202": 30}
    assert result["completed_per_s"] == pytest.approx(20 / result["seconds"], rel=0.02)
    assert result["first_failure"] is not None and "failed" in result["first_failure"]


def test_a_job_still_pending_at_the_timeout_is_lost_with_its_last_answer() -> None:
    app, _ = job_api(polls_to_finish=10**6)
    result = follow(app, jobs=4, connections=2, poll_interval=0.05, timeout=0.5)
    assert (result["completed"], result["lost"]) == (0, 4)
    assert result["pending_at_timeout"] == {"processing": 4}
    assert result["completed_per_s"] == 0.0


def test_a_dead_server_is_reported_not_raised() -> None:
    base = f"http://127.0.0.1:{free_port()}"
    result = run(
        submit_and_follow(
            f"{base}/jobs", b"{}", poll_url=lambda i: f"{base}/{i}", headers={}, jobs=5, timeout=5
        )
    )
    assert result["submitted"] == result["completed"] == result["lost"] == 0
    assert (result["submit_errors"], result["submit_statuses"]) == (5, {"error": 5})
    assert result["first_submit_error"] == "no answer to 5 submits"
