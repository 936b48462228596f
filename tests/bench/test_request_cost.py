"""bench/request_cost.py: the in-process cost of a submit and a poll."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from bench import request_cost
from jobs import services
from jobs.models import AsyncJob, KeyCounters

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _keep_the_test_connection(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The tool calls the WSGI application directly, whose request signals would close the
    connection the test's transaction is on (Django's test client unhooks them the same way).
    It also stubs the publisher for good; the stub goes when the test ends."""
    monkeypatch.setattr(services, "dispatch_soon", services.dispatch_soon)
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def test_the_requests_it_measures_are_an_accepted_submit_and_a_completed_poll():
    requests = request_cost._requests()
    for submit, poll in [
        ("submit", "poll"),
        ("chat_submit", "chat_poll"),
        ("limited_submit", "poll"),
    ]:
        before = AsyncJob.objects.count()
        submitted = requests[submit]()
        polled = requests[poll]()
        assert b'"status":"pending"' in submitted, submitted
        assert b'"status":"completed"' in polled, polled
        assert AsyncJob.objects.count() == before + 1


def test_the_limited_submit_is_counted_under_its_keys_limits():
    submitted = request_cost._requests()["limited_submit"]()
    job = AsyncJob.objects.get(pk=json.loads(submitted)["id"])
    assert job.counted and job.virtual_key is not None
    assert job.virtual_key.has_limits
    assert KeyCounters.objects.get(pk=job.virtual_key_id).pending == 1


def test_the_budget_submit_is_accepted_for_a_key_with_a_budget_and_spend():
    requests = request_cost._requests()
    before = AsyncJob.objects.count()
    assert b'"status":"pending"' in requests["budget_submit"]()
    [job] = AsyncJob.objects.order_by("-created_at")[:1]
    assert AsyncJob.objects.count() == before + 1
    assert job.virtual_key is not None and job.virtual_key.budget_usd is not None
    assert job.virtual_key.spend.count() == 62


def test_cpu_times_gives_one_positive_figure_per_round():
    figures = request_cost.cpu_times(count=3, rounds=2)
    assert set(figures) == {
        "submit",
        "poll",
        "chat_submit",
        "chat_poll",
        "limited_submit",
        "budget_submit",
    }
    assert all(len(values) == 2 and all(v > 0 for v in values) for values in figures.values())


def test_instructions_per_request_is_the_difference_of_two_runs_divided(
    monkeypatch: pytest.MonkeyPatch,
):
    runs: list[list[str]] = []

    def fake_run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        runs.append(command)
        count = int(command[command.index("--requests") + 1])
        total = 5_000_000 + count * 1_000
        return subprocess.CompletedProcess(command, 0, "", f"==1== Collected : {total}\n")

    monkeypatch.setattr(request_cost.shutil, "which", lambda name: "/usr/bin/valgrind")
    monkeypatch.setattr(request_cost.subprocess, "run", fake_run)
    assert request_cost.instructions(200) == dict.fromkeys(request_cost.KINDS, 1_000)
    assert all(command[0] == "valgrind" for command in runs)
    assert {command[command.index("--child") + 1] for command in runs} == set(request_cost.KINDS)


def test_a_failed_callgrind_run_is_an_error(monkeypatch: pytest.MonkeyPatch):
    def failing(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1, "", "valgrind: no such tool")

    monkeypatch.setattr(request_cost.subprocess, "run", failing)
    with pytest.raises(RuntimeError, match="callgrind run failed"):
        request_cost._callgrind_total("poll", 10)
