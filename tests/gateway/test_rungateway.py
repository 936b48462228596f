"""rungateway starts the production web server (granian) beside a Celery worker and beat."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command

from gateway.management.commands import rungateway


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The commands rungateway would start, captured instead of run."""
    commands: dict[str, list[str]] = {}
    monkeypatch.setattr(rungateway, "call_command", lambda *args, **kwargs: None)
    monkeypatch.setattr(rungateway.subprocess, "Popen", lambda argv: argv)

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
