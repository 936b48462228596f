"""The benchmark's load generator: counting, stopping rules and percentiles."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from bench.loadgen import LoadResult, closed_loop, open_loop, percentiles, run
from bench.procs import free_port
from bench.upstream import STATE, make_app, serving


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


def run_against(app: web.Application, load: Callable[[str], Awaitable[LoadResult]]) -> LoadResult:
    async def main() -> LoadResult:
        async with serving(app) as base:
            return await load(base)

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
            on_response=lambda status, body: seen.append((status, body)),
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

    def count(status: int, body: bytes) -> None:
        nonlocal responses
        responses += 1

    app = make_app(latency_ms=10)
    result = run_against(
        app,
        lambda base: closed_loop(
            f"{base}/v1/completions",
            body=b'{"model": "m"}',
            headers={"Content-Type": "application/json"},
            connections=4,
            duration=0.4,
            warmup=0.2,
            on_response=count,
        ),
    )
    assert 0.4 <= result.seconds < 0.8
    assert result.statuses.keys() == {200}
    assert result.ok == result.requests
    # 4 connections, ~10 ms each: about 160 counted; the warm-up's responses are extra.
    assert 40 <= result.requests <= 170
    assert responses > result.requests
    assert result.latency_ms["p50"] >= 10


def test_closed_loop_keeps_the_given_number_of_connections_busy() -> None:
    app = make_app(latency_ms=50)
    run_against(
        app,
        lambda base: closed_loop(f"{base}/v1/responses", body=b"{}", connections=16, total=48),
    )
    assert app[STATE].peak_in_flight == 16
    assert app[STATE].requests == 48


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
    app = make_app(latency_ms=100)
    result = run_against(
        app,
        lambda base: open_loop(
            f"{base}/v1/completions",
            rate=200,
            duration=0.5,
            body=b'{"model": "m"}',
            headers={"Content-Type": "application/json"},
        ),
    )
    assert result.requests == 100
    assert result.statuses == {200: 100}
    # 200/s with 100 ms each: about 20 in flight; a closed loop would have waited for each.
    assert app[STATE].peak_in_flight >= 10
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
            on_response=lambda status, body: seen.append(status),
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
