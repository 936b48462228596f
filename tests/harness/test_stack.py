"""The stack's environment is explicit, and it migrates and makes keys in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.procs import Procs
from harness.stack import Stack, StackConfig
from harness.upstream import UPSTREAM_ANTHROPIC_KEY, UPSTREAM_OPENAI_KEY


def config(tmp_path: Path, **options: object) -> StackConfig:
    database_url = f"sqlite:///{tmp_path / 'var' / 'gateway.sqlite3'}"
    return StackConfig(database_url, tmp_path / "var", "q1", **options)  # type: ignore[arg-type]


def test_nothing_the_shell_says_about_a_gateway_reaches_the_processes(tmp_path, monkeypatch):
    for name, value in {
        "GATEWAY_RETRIES": "9",
        "CELERY_BROKER_URL": "redis://elsewhere:6379/0",
        "DB_CONN_MAX_AGE": "0",
        "MISTRAL_API_KEY": "sk-from-the-shell",
        "SECRET_KEY": "the-shells-secret",
        "HARNESS_UNRELATED": "kept",
    }.items():
        monkeypatch.setenv(name, value)
    env = config(tmp_path, upstream_url="http://127.0.0.1:7000").env()
    assert env["HARNESS_UNRELATED"] == "kept"
    assert "PATH" in env
    for name in ("GATEWAY_RETRIES", "CELERY_BROKER_URL", "DB_CONN_MAX_AGE", "MISTRAL_API_KEY"):
        assert name not in env  # the embedded broker, and the gateway's defaults
    assert env["SECRET_KEY"] != "the-shells-secret"
    assert env["GATEWAY_QUEUE"] == "q1"
    assert env["GATEWAY_VAR_DIR"] == str(tmp_path / "var")
    assert (env["OPENAI_BASE_URL"], env["OPENAI_API_KEY"]) == (
        "http://127.0.0.1:7000/v1",
        UPSTREAM_OPENAI_KEY,
    )
    assert (env["ANTHROPIC_BASE_URL"], env["ANTHROPIC_API_KEY"]) == (
        "http://127.0.0.1:7000",
        UPSTREAM_ANTHROPIC_KEY,
    )


def test_the_broker_and_further_settings_are_the_configs(tmp_path):
    env = config(
        tmp_path, broker_url="redis://127.0.0.1:6379/3", settings={"GATEWAY_RETRIES": "0"}
    ).env()
    assert env["CELERY_BROKER_URL"] == "redis://127.0.0.1:6379/3"
    assert env["GATEWAY_RETRIES"] == "0"


def test_prepare_migrates_and_makes_a_key_and_a_failing_command_says_why(tmp_path):
    with Procs(tmp_path / "logs") as procs:
        stack = Stack(procs, config(tmp_path))
        stack.prepare("harness-test")
        assert stack.key.startswith("sk-bf-")
        assert stack.auth["Authorization"] == f"Bearer {stack.key}"
        with pytest.raises(RuntimeError, match=r"manage\.py no_such_command failed"):
            stack.manage("no_such_command")


class RecordingProcs(Procs):
    """The launcher, minus the launching: what each process would have been started with."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__(log_dir)
        self.argv: dict[str, list[str]] = {}

    def start(self, name, argv, env=None, cwd=None):
        self.argv[name] = argv


def test_one_worker_may_log_at_another_level_than_the_configs(tmp_path):
    procs = RecordingProcs(tmp_path / "logs")
    stack = Stack(procs, config(tmp_path, worker_log_level="WARNING"))
    stack.start_worker(0)
    stack.start_worker(1, log_level="INFO")
    levels = {name: argv[argv.index("--loglevel") + 1] for name, argv in procs.argv.items()}
    assert levels == {"worker-0": "WARNING", "worker-1": "INFO"}
    assert procs.argv["worker-1"][-2:] == ["-n", "q1-1@%h"]
