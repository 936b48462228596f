"""A malformed setting stops every entry point at start: one line naming it, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.management.commands.rungateway import web_command
from harness.procs import free_port

ROOT = Path(__file__).resolve().parents[2]

MALFORMED = {
    "DATABASE_URL": ("nonsense", "postgres://, postgresql:// or sqlite://"),
    "CELERY_BROKER_URL": ("nonsense", "redis://"),
    "LOG_LEVEL": ("LOUD", "'INFO'"),
}

ENTRY_POINTS = {
    "manage.py": [sys.executable, "manage.py", "check"],
    "celery worker": [sys.executable, "-m", "celery", "-A", "gateway", "worker"],
    "celery beat": [sys.executable, "-m", "celery", "-A", "gateway", "beat"],
    "wsgi": [sys.executable, "-c", "import gateway.wsgi"],
    "asgi": [sys.executable, "-c", "import gateway.asgi"],
}


def start(argv: list[str], tmp_path: Path, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEWAY_VAR_DIR": str(tmp_path), **environ}
    # A worker that did start would run until stopped: the timeout fails the test instead.
    return subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def assert_one_line_naming(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for text in expected:
        assert text in lines[0]


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
@pytest.mark.parametrize("variable", MALFORMED)
def test_malformed_setting_stops_the_entry_point_with_one_line(tmp_path, entry_point, variable):
    value, expects = MALFORMED[variable]
    result = start(ENTRY_POINTS[entry_point], tmp_path, **{variable: value})
    assert_one_line_naming(result, variable, expects)


@pytest.mark.parametrize(
    ("variable", "value", "expects"),
    [
        ("PORT", "abc", "integer"),
        ("PORT", "70000", "at most 65535"),
        ("WEB_CONCURRENCY", "0", "at least 1"),
        ("WEB_THREADS", "many", "integer"),
    ],
)
def test_rungateway_refuses_a_malformed_port_or_process_count_before_starting_anything(
    tmp_path, variable, value, expects
):
    result = start([sys.executable, "manage.py", "rungateway"], tmp_path, **{variable: value})
    assert_one_line_naming(result, variable, expects)
    assert not (tmp_path / "static" / "admin").exists()  # collectstatic never ran


def test_a_deployment_without_allowed_hosts_refuses_to_start(tmp_path):
    environ = {"SECRET_KEY": "k" * 50, "DATABASE_URL": "postgres://gw@db.invalid/gw"}
    env = {k: v for k, v in os.environ.items() if k != "ALLOWED_HOSTS"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**env, "GATEWAY_VAR_DIR": str(tmp_path), **environ},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_one_line_naming(result, "ALLOWED_HOSTS")


def test_a_password_in_a_malformed_url_is_never_printed(tmp_path):
    result = start(
        ENTRY_POINTS["manage.py"],
        tmp_path,
        DATABASE_URL="postgres://gw:hunter2-secret@db:notaport/gw",
        CELERY_BROKER_URL="mysql://gw:other-secret@db/0",
    )
    assert_one_line_naming(result, "DATABASE_URL", "port")
    assert "hunter2-secret" not in result.stderr


def test_a_broker_url_with_an_unknown_scheme_names_the_scheme_not_the_password(tmp_path):
    result = start(
        ENTRY_POINTS["manage.py"], tmp_path, CELERY_BROKER_URL="mysql://gw:other-secret@db/0"
    )
    assert_one_line_naming(result, "CELERY_BROKER_URL", "got mysql://")
    assert "other-secret" not in result.stderr


def test_granian_serving_the_gateway_stops_on_a_malformed_setting(tmp_path):
    argv = web_command(sys.executable, host="127.0.0.1", port=free_port(), workers=1, threads=1)
    result = start(argv, tmp_path, LOG_LEVEL="LOUD")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    # Granian starts a crashed worker once more before it gives up: the same line each time.
    lines = set(result.stderr.splitlines())
    assert len(lines) == 1, result.stderr
    assert "LOG_LEVEL" in lines.pop()
