"""Scenario 7's own conditions: what a worker started without a broker must have done."""

from __future__ import annotations

from typing import Any

import pytest

from drill.scenarios import AFTER_BROKER_JOBS, BROKERLESS_JOBS, worker_without_broker_checks

ENGINE = "vm:28003:694f0013"
TOTAL = BROKERLESS_JOBS + AFTER_BROKER_JOBS


def summary(**overrides: Any) -> dict[str, Any]:
    return {"submitted": TOTAL, "accepted": TOTAL, "completed": TOTAL} | overrides


def figures(**overrides: Any) -> dict[str, Any]:
    return {
        "worker_exit_codes": {"worker-0": 0, "worker-1": 0},
        "web_bells_not_rung_lines": 197,
        "pending_after_wait": BROKERLESS_JOBS,
        "completed_after_worker_start_s": 2.0,
        "claims": {ENGINE: {"1": BROKERLESS_JOBS}},
        "upstream_calls": BROKERLESS_JOBS,
        "ready_after_redis_s": 1.8,
    } | overrides


def said(broker_refused: int = 1, ready: int = 0) -> dict[str, int]:
    return {"engines_started": 1, "broker_refused_lines": broker_refused, "ready_lines": ready}


def failed(
    summary_: dict[str, Any] | None = None,
    figures_: dict[str, Any] | None = None,
    said_: dict[str, int] | None = None,
    engines: tuple[str, ...] = (ENGINE,),
) -> list[str]:
    figures_ = (figures_ or figures()) | {"worker_log_while_down": said_ or said()}
    checks = worker_without_broker_checks(summary_ or summary(), figures_, list(engines))
    return [name for name, ok in checks.items() if not ok]


def test_a_worker_that_ran_every_pending_job_once_without_a_broker_passes_every_check():
    assert failed() == []


@pytest.mark.parametrize(
    ("figures_", "check"),
    [
        (figures(worker_exit_codes={"worker-0": 0, "worker-1": -9}), "workers_exited_on_sigterm"),
        (figures(web_bells_not_rung_lines=0), "web_logged_broker_unavailable"),
        (figures(pending_after_wait=BROKERLESS_JOBS - 1), "still_pending_after_wait"),
        (figures(completed_after_worker_start_s=None), "completed_without_broker_in_time"),
        (figures(upstream_calls=BROKERLESS_JOBS + 1), "one_upstream_call_each"),
        (figures(ready_after_redis_s=None), "worker_logged_ready_with_broker_back"),
    ],
    ids=["killed", "web-silent", "claimed-early", "too-slow", "two-calls", "never-ready"],
)
def test_each_figure_out_of_line_fails_its_own_check_alone(figures_, check):
    assert failed(figures_=figures_) == [check]


def test_a_job_claimed_twice_fails_the_claim_check():
    claims = {ENGINE: {"1": BROKERLESS_JOBS - 1, "2": 1}}
    assert failed(figures_=figures(claims=claims)) == ["one_engine_claimed_each_once"]


def test_jobs_claimed_by_an_engine_other_than_the_started_one_fail_the_claim_check():
    claims = {"elsewhere:1:abc": {"1": BROKERLESS_JOBS}}
    assert failed(figures_=figures(claims=claims)) == ["one_engine_claimed_each_once"]


def test_a_worker_that_started_two_engines_fails_the_claim_check():
    engines = (ENGINE, "vm:28004:0badf00d")
    assert failed(engines=engines) == ["one_engine_claimed_each_once"]


def test_a_ready_line_while_the_broker_was_down_fails():
    assert failed(said_=said(ready=1)) == ["no_ready_while_broker_down"]


def test_a_worker_that_never_said_it_could_not_reach_the_broker_fails():
    assert failed(said_=said(broker_refused=0)) == ["worker_logged_broker_refused"]


def test_a_refused_submit_or_an_unfinished_job_fails_its_check():
    assert failed(summary(accepted=TOTAL - 1, completed=TOTAL - 1)) == ["every_post_202"]
    assert failed(summary(completed=TOTAL - 1)) == ["all_completed_with_broker_back"]
