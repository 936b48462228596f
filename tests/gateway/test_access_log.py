"""The web server logs no line per request unless GRANIAN_LOG_ACCESS_ENABLED=true; then each line
carries the request's id (README, "Logs")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gateway.management.commands.rungateway import web_command
from harness.procs import free_port

ROOT = Path(__file__).resolve().parents[2]
ACCESS_LOG = "GRANIAN_LOG_ACCESS_ENABLED"  # granian's own switch for --access-log


def served_log(tmp_path: Path, **environ: str) -> list[str]:
    """Start the production web command, ask /health once with a request id, stop it, and
    return what it logged."""
    port = free_port()
    argv = web_command(sys.executable, host="127.0.0.1", port=port, workers=1, threads=1)
    env = {name: value for name, value in os.environ.items() if name != ACCESS_LOG}
    env |= {"GATEWAY_VAR_DIR": str(tmp_path), "LOG_FORMAT": "json", **environ}
    log_path = tmp_path / "web.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/health", headers={"X-Request-ID": "probe-1"}
            )
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(request, timeout=5) as answer:
                        assert answer.status == 200
                        break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        pytest.fail(log_path.read_text())
                    time.sleep(0.2)
            time.sleep(0.5)  # the access line is written after the answer
        finally:
            server.terminate()
            server.wait(timeout=30)
    return log_path.read_text().splitlines()


def json_lines(lines: list[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_no_line_per_request_by_default(tmp_path):
    lines = json_lines(served_log(tmp_path))
    assert lines  # the server did log (its start and stop)
    assert not [line for line in lines if line.get("logger") == "granian.access"]


def test_granian_access_log_gives_a_line_per_request_with_its_id(tmp_path):
    lines = json_lines(served_log(tmp_path, **{ACCESS_LOG: "true"}))
    [access] = [line for line in lines if line.get("logger") == "granian.access"]
    assert access["request_id"] == "probe-1"
    assert "GET /health" in str(access["event"])
