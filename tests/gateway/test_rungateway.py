"""rungateway starts the production web server (granian) beside a Celery worker and beat."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.core.management import call_command

from gateway.management.commands import rungateway
from harness.procs import free_port


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The commands rungateway would start, captured instead of run."""
    commands: dict[str, list[str]] = {}
    monkeypatch.setattr(rungateway, "call_command", lambda *args, **kwargs: None)
    monkeypatch.setattr(rungateway.subprocess, "Popen", lambda argv, **kwargs: argv)

    def supervise(self: Any, children: dict[str, list[str]]) -> None:
        commands.update(children)

    monkeypatch.setattr(rungateway.Command, "_supervise", supervise)
    return commands


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_web_is_granian_serving_the_wsgi_application(started):
    call_command("rungateway", "--port", "8123", "--host", "127.0.0.2")
    web = started["web"]
    assert web[1:6] == ["-m", "granian", "--interface", "wsgi", "gateway.wsgi:application"]
    assert (option(web, "--host"), option(web, "--port")) == ("127.0.0.2", "8123")
    assert "--respawn-failed-workers" in web
    assert {"worker", "beat"} <= set(started)


def test_web_processes_and_threads_default_to_two_by_twelve(started, monkeypatch):
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.delenv("WEB_THREADS", raising=False)
    call_command("rungateway")
    web = started["web"]
    assert (option(web, "--workers"), option(web, "--blocking-threads")) == ("2", "12")


def test_web_processes_and_threads_come_from_the_environment(started, monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    monkeypatch.setenv("WEB_THREADS", "6")
    call_command("rungateway")
    web = started["web"]
    assert (option(web, "--workers"), option(web, "--blocking-threads")) == ("4", "6")


def test_web_processes_and_threads_can_be_given_on_the_command_line(started):
    call_command("rungateway", "--web-workers", "3", "--web-threads", "12")
    web = started["web"]
    assert (option(web, "--workers"), option(web, "--blocking-threads")) == ("3", "12")


def _children_of(pid: int) -> set[int]:
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError):
            # The fields after the command name, which may hold spaces: state, then the parent.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                children.add(int(stat.parent.name))
    return children


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ctrl_c_stops_the_web_server_worker_and_beat_within_seconds(tmp_path):
    """A terminal's Ctrl-C sends SIGINT to the whole foreground group, rungateway included."""
    port = free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"DATABASE_URL", "CELERY_BROKER_URL", "PORT", "HOST"}
    }
    env.update(GATEWAY_VAR_DIR=str(tmp_path), PORT=str(port), HOST="127.0.0.1")
    log = tmp_path / "rungateway.log"  # its children's output too: they write where it does
    with log.open("wb") as output:
        gateway = subprocess.Popen(
            [sys.executable, "manage.py", "rungateway"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert gateway.poll() is None, "rungateway exited before it answered"
            with suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "/health did not answer within 60 s"
            time.sleep(0.25)
        children = _children_of(gateway.pid)
        assert len(children) == 3  # web, worker, beat

        stopping = time.monotonic()
        os.killpg(gateway.pid, signal.SIGINT)
        try:
            gateway.wait(timeout=30)
        except subprocess.TimeoutExpired:
            alive = [pid for pid in children if _alive(pid)]
            tail = log.read_text(errors="replace")[-4000:]
            pytest.fail(
                f"rungateway still running 30 s after Ctrl-C; children alive {alive}:\n{tail}"
            )
        assert time.monotonic() - stopping < 15
        assert not [pid for pid in children if _alive(pid)]
    finally:
        with suppress(ProcessLookupError):
            os.killpg(gateway.pid, signal.SIGKILL)
