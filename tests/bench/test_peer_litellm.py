"""The S7 peer module: config, start command, bodies, and the background-mode measurement.

``measure_completed`` runs against a small in-test server that speaks LiteLLM's background
protocol (a queued response at once, then ``in_progress`` until the N-th poll). No LiteLLM is
installed or started here.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bench import peer_litellm as pl

MODEL = "bench-model"


# --- configuration ------------------------------------------------------------------------------
def test_the_config_points_one_openai_model_at_the_upstream() -> None:
    config = pl.config("http://127.0.0.1:9100", MODEL, "redis://127.0.0.1:6379/5")

    assert config["model_list"] == [
        {
            "model_name": MODEL,
            "litellm_params": {
                "model": f"openai/{MODEL}",
                "api_base": "http://127.0.0.1:9100/v1",
                "api_key": "bench-upstream-key",
            },
        }
    ]
    redis = {"url": "redis://127.0.0.1:6379/5", "max_connections": 1000}
    assert config["general_settings"] == {"coordination_redis": redis}
    assert config["litellm_settings"] == {
        "responses": {"background_mode": {"polling_via_cache": "all", "ttl": 3600}}
    }
    # The master key travels in the environment, never in the file.
    assert pl.MASTER_KEY not in json.dumps(config)


@pytest.mark.parametrize(
    "upstream_url",
    ["http://127.0.0.1:9100", "http://127.0.0.1:9100/", "http://127.0.0.1:9100/v1"],
)
def test_api_base_ends_in_v1_exactly_once(upstream_url: str) -> None:
    params = pl.config(upstream_url, MODEL)["model_list"][0]["litellm_params"]
    assert params["api_base"] == "http://127.0.0.1:9100/v1"


def test_the_peers_redis_is_not_the_gateways_db() -> None:
    assert pl.config("http://u", MODEL)["general_settings"]["coordination_redis"]["url"] == (
        "redis://127.0.0.1:6379/5"
    )


# --- start command ------------------------------------------------------------------------------
def test_command_runs_the_venvs_litellm_with_two_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://root@127.0.0.1/postgres")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("LITELLM_LOG", "DEBUG")
    monkeypatch.setenv("PORT", "8000")
    monkeypatch.setenv("BENCH_KEEP_ME", "1")
    python = tmp_path / "venv" / "bin" / "python"
    config = tmp_path / "litellm.yaml"

    argv, env = pl.command(python, port=4321, config_file=config)

    assert argv == [
        str(python),
        str(tmp_path / "venv" / "bin" / "litellm"),
        "--host",
        "127.0.0.1",
        "--port",
        "4321",
        "--config",
        str(config),
        "--num_workers",
        "2",
        "--timeout_worker_healthcheck",
        "60",
    ]
    assert env["LITELLM_MASTER_KEY"] == pl.MASTER_KEY
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert env["LITELLM_TELEMETRY_DISABLED"] == "true"
    assert env["PATH"].split(":")[0] == str(python.parent)
    for dropped in ("DATABASE_URL", "REDIS_URL", "LITELLM_LOG", "PORT"):
        assert dropped not in env
    assert env["BENCH_KEEP_ME"] == "1"
    assert all(isinstance(value, str) for value in env.values())


def test_constants() -> None:
    assert pl.RESPONSES_PATH == "/v1/responses"
    assert pl.COMPLETIONS_PATH == "/v1/completions"
    assert pl.HEALTH_PATH == "/health/liveliness"
    assert pl.MASTER_KEY.startswith("sk-")
    assert pl.HEADERS["Authorization"] == f"Bearer {pl.MASTER_KEY}"
    assert pl.VENV_DIR.parts[-2:] == (".bench", "litellm-venv")
    assert pl.LITELLM_SPEC == "litellm[proxy]==1.108.7"


def test_the_bodies_are_a_background_response_and_a_completion() -> None:
    assert json.loads(pl.background_body(MODEL)) == {
        "model": MODEL,
        "input": "Say hello to the benchmark.",
        "background": True,
    }
    assert json.loads(pl.completion_body(MODEL)) == {
        "model": MODEL,
        "prompt": "Say hello to the benchmark.",
        "max_tokens": 16,
    }


# --- install ------------------------------------------------------------------------------------
def test_ensure_venv_skips_a_finished_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    (venv / pl.MARKER_NAME).write_text(pl.LITELLM_SPEC + "\n")
    calls: list[list[str]] = []
    monkeypatch.setattr(pl.subprocess, "run", lambda argv, **kw: calls.append(argv))

    assert pl.ensure_venv(venv, log=lambda line: None) == venv / "bin" / "python"
    assert calls == []


def test_ensure_venv_creates_installs_then_marks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = tmp_path / "venv"
    calls: list[list[str]] = []

    def fake_run(argv: list[str], **kwargs: Any) -> None:
        calls.append(argv)
        assert kwargs["check"] is True
        if argv[1:3] == ["-m", "venv"]:
            (venv / "bin").mkdir(parents=True)
            (venv / "bin" / "python").write_text("")
        else:  # the marker appears only after pip succeeded
            assert not (venv / pl.MARKER_NAME).exists()

    monkeypatch.setattr(pl.subprocess, "run", fake_run)
    lines: list[str] = []

    python = pl.ensure_venv(venv, log=lines.append)

    assert python == venv / "bin" / "python"
    assert calls[0] == [sys.executable, "-m", "venv", str(venv)]
    assert calls[1][:4] == [str(python), "-m", "pip", "install"]
    assert calls[1][-1] == pl.LITELLM_SPEC
    assert (venv / pl.MARKER_NAME).read_text().strip() == pl.LITELLM_SPEC
    assert any("installed" in line for line in lines)


def test_ensure_venv_reinstalls_after_a_failed_pip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")  # a venv whose install never finished
    calls: list[list[str]] = []
    monkeypatch.setattr(pl.subprocess, "run", lambda argv, **kw: calls.append(argv))

    pl.ensure_venv(venv, log=lambda line: None)

    assert [argv[1:4] for argv in calls] == [["-m", "pip", "install"]]  # no second venv
    assert (venv / pl.MARKER_NAME).exists()


# --- measure_completed against a fake background-mode proxy ---------------------------------------
class FakeProxy:
    """Imitates LiteLLM's polling protocol: POST answers ``queued``; each GET of an id answers
    ``in_progress`` until its ``polls_to_finish``-th poll, which answers ``final_status``."""

    def __init__(
        self,
        *,
        polls_to_finish: int = 3,
        final_status: str = "completed",
        fail_every: int = 0,
        never_finish_every: int = 0,
        forget_every: int = 0,
        reject_every: int = 0,
        transient_404_polls: int = 0,
    ) -> None:
        self.polls_to_finish = polls_to_finish
        self.final_status = final_status
        self.fail_every = fail_every
        self.never_finish_every = never_finish_every
        self.forget_every = forget_every
        self.reject_every = reject_every
        self.transient_404_polls = transient_404_polls
        self.submits = 0
        self.polls: Counter[str] = Counter()
        self.auth: set[str] = set()
        self.bodies: list[dict[str, Any]] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.last_poll_at: dict[str, float] = {}
        self.min_poll_gap = float("inf")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/responses", self.submit)
        app.router.add_get("/v1/responses/{id}", self.poll)
        return app

    def _enter(self, request: web.Request) -> None:
        self.auth.add(request.headers.get("Authorization", ""))
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    async def submit(self, request: web.Request) -> web.Response:
        self._enter(request)
        try:
            self.submits += 1
            number = self.submits
            self.bodies.append(await request.json())
            await asyncio.sleep(0.002)
            if self.reject_every and number % self.reject_every == 0:
                return web.json_response({"error": {"message": "rate limited"}}, status=429)
            response_id = f"litellm_poll_{number}"
            return web.json_response({"id": response_id, "object": "response", "status": "queued"})
        finally:
            self.in_flight -= 1

    async def poll(self, request: web.Request) -> web.Response:
        self._enter(request)
        try:
            response_id = request.match_info["id"]
            number = int(response_id.rsplit("_", 1)[1])
            now = time.monotonic()
            if response_id in self.last_poll_at:
                self.min_poll_gap = min(self.min_poll_gap, now - self.last_poll_at[response_id])
            self.last_poll_at[response_id] = now
            self.polls[response_id] += 1
            forgotten = self.forget_every and number % self.forget_every == 0
            if forgotten or self.polls[response_id] <= self.transient_404_polls:
                return web.json_response({"detail": "not found or expired"}, status=404)
            status = "in_progress"
            if self.polls[response_id] >= self.polls_to_finish and not (
                self.never_finish_every and number % self.never_finish_every == 0
            ):
                status = self.final_status
                if self.fail_every and number % self.fail_every == 0:
                    status = "failed"
            body: dict[str, Any] = {"id": response_id, "object": "response", "status": status}
            if status == "failed":
                body["error"] = {"code": "server_error", "message": "upstream broke"}
            return web.json_response(body)
        finally:
            self.in_flight -= 1


async def _measure(fake: FakeProxy, **kwargs: Any) -> dict[str, Any]:
    runner = web.AppRunner(fake.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        return await pl.measure_completed(f"http://127.0.0.1:{port}/", model=MODEL, **kwargs)
    finally:
        await runner.cleanup()


def test_measure_completed_counts_every_job_completed() -> None:
    fake = FakeProxy(polls_to_finish=3)

    result = asyncio.run(_measure(fake, jobs=40, connections=8, poll_interval=0.05, timeout=20))

    assert {k: result[k] for k in ("jobs", "submitted", "completed", "failed", "lost")} == {
        "jobs": 40,
        "submitted": 40,
        "completed": 40,
        "failed": 0,
        "lost": 0,
    }
    assert fake.submits == 40
    assert fake.auth == {f"Bearer {pl.MASTER_KEY}"}
    assert fake.bodies[0] == {
        "model": MODEL,
        "input": "Say hello to the benchmark.",
        "background": True,
    }
    assert set(fake.polls.values()) == {3}  # nobody polled after its terminal answer
    assert result["polls"] == 120
    assert fake.peak_in_flight <= 8
    assert fake.min_poll_gap >= 0.045  # each id waits poll_interval between its polls
    # Two waits of 0.05 s between three polls bound the time from below.
    assert result["seconds"] >= 0.1
    assert result["completed_per_s"] == pytest.approx(40 / result["seconds"], rel=0.02)
    assert result["submit_per_s"] > result["completed_per_s"]
    assert result["submit_statuses"] == {"200": 40}
    assert result["submit_errors"] == result["poll_errors"] == result["unknown"] == 0
    assert result["pending_at_timeout"] == {}
    assert result["first_failure"] is None


def test_measure_completed_splits_completed_failed_and_lost() -> None:
    # Of ids 1..30: every 5th fails, every 7th never finishes, every 11th is unknown (404).
    fake = FakeProxy(polls_to_finish=2, fail_every=5, never_finish_every=7, forget_every=11)

    result = asyncio.run(
        _measure(fake, jobs=30, connections=6, poll_interval=0.05, timeout=2.0, unknown_after=0.3)
    )

    ids = range(1, 31)
    forgotten = {n for n in ids if n % 11 == 0}  # 11, 22
    stuck = {n for n in ids if n % 7 == 0} - forgotten  # 7, 14, 21, 28
    failed = {n for n in ids if n % 5 == 0} - forgotten - stuck  # 5, 10, 15, 20, 25, 30
    assert result["submitted"] == 30
    assert result["failed"] == len(failed) == 6
    assert result["unknown"] == len(forgotten) == 2
    assert result["lost"] == len(forgotten) + len(stuck) == 6
    assert result["pending_at_timeout"] == {"in_progress": len(stuck)}
    assert result["completed"] == 30 - 6 - 6 == 18
    assert result["not_found"] >= 2 * 6  # each forgotten id was asked for about 0.3 s
    assert "upstream broke" in result["first_failure"]
    assert result["first_poll_error"].startswith("404")
    # The stuck jobs were polled until the timeout, so polling ran out the clock ...
    assert max(fake.polls[f"litellm_poll_{n}"] for n in stuck) > 10
    # ... but "seconds" ends at the last terminal status seen, well before it.
    assert result["seconds"] < 1.0


def test_measure_completed_rides_out_transient_404s() -> None:
    # Each id answers 404 to its first two polls (a failed Redis read), then completes.
    fake = FakeProxy(polls_to_finish=4, transient_404_polls=2)

    result = asyncio.run(
        _measure(fake, jobs=10, connections=5, poll_interval=0.02, timeout=10, unknown_after=1.0)
    )

    assert result["completed"] == 10
    assert result["lost"] == result["unknown"] == 0
    assert result["not_found"] == 20
    assert set(fake.polls.values()) == {4}


def test_measure_completed_counts_rejected_submits() -> None:
    fake = FakeProxy(polls_to_finish=1, reject_every=4)

    result = asyncio.run(_measure(fake, jobs=20, connections=4, poll_interval=0.02, timeout=10))

    assert result["submitted"] == 15
    assert result["submit_errors"] == 5
    assert result["submit_statuses"] == {"200": 15, "429": 5}
    assert result["completed"] == 15
    assert result["lost"] == result["failed"] == 0
    assert result["first_submit_error"].startswith("429")


def test_measure_completed_all_failed_has_no_completed_rate() -> None:
    fake = FakeProxy(polls_to_finish=1, final_status="failed")

    result = asyncio.run(_measure(fake, jobs=10, connections=10, poll_interval=0.02, timeout=10))

    assert result["failed"] == 10
    assert result["completed"] == 0
    assert result["completed_per_s"] == 0.0
    assert result["seconds"] > 0


def test_start_writes_the_config_beside_the_venv_and_starts_the_proxy_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = tmp_path / ".bench" / "litellm-venv"
    monkeypatch.setattr(pl, "VENV_DIR", venv)

    def installed(venv_dir: Path, log: Any) -> Path:  # as ensure_venv leaves it
        (venv_dir / "bin").mkdir(parents=True)
        return venv_dir / "bin" / "python"

    monkeypatch.setattr(pl, "ensure_venv", installed)
    started: list[tuple[str, list[str], Path]] = []
    waited: list[str] = []

    class FakeProcs:
        def start(self, name: str, argv: list[str], *, env: dict[str, str], cwd: Path) -> None:
            started.append((name, argv, cwd))

        def wait_http(self, name: str, url: str, timeout: float) -> None:
            waited.append(url)

    procs: Any = FakeProcs()
    url = pl.start(procs, "http://127.0.0.1:9100", lambda line: None)

    config_file = tmp_path / ".bench" / "litellm-config.yaml"
    assert json.loads(config_file.read_text()) == pl.config("http://127.0.0.1:9100", pl.MODEL)
    [(name, argv, cwd)] = started
    assert (name, cwd) == ("peer", tmp_path / ".bench")
    assert argv[argv.index("--config") + 1] == str(config_file)
    assert url == f"http://127.0.0.1:{argv[argv.index('--port') + 1]}"
    assert waited == [f"{url}{pl.HEALTH_PATH}"]
