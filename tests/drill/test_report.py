"""The drill's report: one row per scenario, the run's facts above the table."""

from __future__ import annotations

import json

import pytest

from drill import run


def scenario(**overrides: object) -> dict:
    data = {
        "submitted": 2000,
        "accepted": 1741,
        "completed": 1741,
        "failed": {},
        "lost": 0,
        "duplicated": 0,
        "charged_twice": 0,
        "completed_uncharged": 0,
        "unanswered": 0,
        "refused": {"503": 259},
        "refused_not_in_error_shape": 0,
        "created_without_202": {"after_refusal": 0, "after_no_answer": 0, "unfinished": 0},
        "extra_condition": "only 503s",
        "extra_ok": True,
        "passed": True,
    }
    return data | overrides


RESULTS = {
    "machine": {
        "cpus": 2,
        "cpu_model": "test cpu",
        "python": "3.11",
        "load_average_at_start": [1.5, 1.25, 1],
    },
    "load_average_at_end": [2, 1.5, 1.125],
    "command": "make drill ARGS='--only 1,2'",
    "seconds": 95.0,
    "finished_at": "2026-11-26 16:00 UTC",
    "scenarios": {
        "1": scenario(lost=3, passed=False, postgres_errors={"deadlock detected": 2}),
        "2": {"error": "RuntimeError: Redis did not start", "postgres_errors": {}},
    },
}


def rows() -> dict[str, list[str]]:
    lines = run.table(RESULTS).splitlines()[2:]
    return {line.split(" | ")[0].strip("| "): line.split(" | ") for line in lines}


def test_a_row_shows_the_counts_and_fails_when_a_job_was_lost():
    row = rows()["1"]
    assert row[2:11] == ["2,000", "1,741", "1,741", "0", "3", "0", "0", "0", "503: 259"]
    assert row[-1].startswith("FAILED")


def test_the_charges_column_shows_charges_beyond_one_per_job_and_completed_jobs_uncharged():
    data = {**RESULTS, "scenarios": {"1": scenario(charged_twice=2, completed_uncharged=3)}}
    row = run.table(data).splitlines()[2].split(" | ")
    assert row[8] == "2 (3 completed uncharged)"
    data = {**RESULTS, "scenarios": {"1": scenario(pending_miscounted=2)}}
    row = run.table(data).splitlines()[2].split(" | ")
    assert row[8] == "0 (pending counters off by 2)"


def test_a_scenario_that_raised_shows_its_error_and_fails():
    assert "error: RuntimeError: Redis did not start" in rows()["2"][-2]
    assert rows()["2"][-1].startswith("FAILED")


def test_a_scenario_not_run_says_so():
    assert rows()["3"][-1].startswith("not run")


def test_a_passing_scenario_names_its_own_condition():
    data = {**RESULTS, "scenarios": {"1": scenario(failed={"upstream_timeout": 5})}}
    row = run.table(data).splitlines()[2]
    assert "upstream_timeout: 5" in row
    assert "only 503s: yes" in row
    assert row.endswith("passed |")


def test_the_report_names_date_machine_command_and_postgres_errors():
    text = run.render(RESULTS)
    assert "2026-11-26 16:00 UTC" in text
    assert "2 CPUs (test cpu)" in text
    assert "at start 1.50/1.25/1.00, at the end 2.00/1.50/1.12" in text
    assert "`make drill ARGS='--only 1,2'` (95 s)" in text
    assert "GATEWAY_JOB_LEASE_SECONDS=10" in text
    assert "1: deadlock detected: 2; 2: none" in text


def test_write_puts_the_table_and_the_raw_figures_side_by_side(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "REPORT", tmp_path / "RELIABILITY.md")
    monkeypatch.setattr(run, "RAW", tmp_path / "results.json")
    path = run.write(dict(RESULTS))
    assert path.read_text().startswith("# Reliability drill")
    assert json.loads((tmp_path / "results.json").read_text())["scenarios"]["1"]["lost"] == 3


def test_the_runner_refuses_an_unknown_scenario(capsys):
    with pytest.raises(SystemExit):
        run.main(["--only", "1,9"])
    assert "unknown scenarios: 9" in capsys.readouterr().err


def test_a_worker_that_died_in_the_redis_outage_is_named_with_its_last_critical_line():
    line = "2026-11-26 16:39:07,586 CRITICAL celery.worker Unrecoverable error: AttributeError(...)"
    s2 = scenario(
        refused={},
        outage_seconds=30.0,
        completed_during_outage=1496,
        workers_alive=False,
        extra_ok=False,
        passed=False,
        dead_workers_last_critical_line={"worker-1": line},
    )
    text = run.render({**RESULTS, "scenarios": {"2": s2}})
    assert "completed during outage: 1,496" in text
    assert f"dead workers last critical line: (worker-1: {line})" in text


def worker_without_broker(**overrides: object) -> dict:
    checks = {"still_pending_after_wait": True, "no_ready_while_broker_down": True}
    return (
        scenario(
            submitted=210,
            accepted=210,
            completed=210,
            refused={},
            worker_exit_codes={"worker-0": 0, "worker-1": 0},
            web_bells_not_rung_lines=197,
            pending_after_wait=200,
            completed_after_worker_start_s=2.0,
            claims={"vm:28003:694f0013": {"1": 200}},
            upstream_calls=200,
            ready_after_redis_s=1.8,
            worker_log_while_down={
                "engines_started": 1,
                "broker_refused_lines": 1,
                "ready_lines": 0,
            },
            checks=checks,
        )
        | overrides
    )


def test_the_worker_started_without_a_broker_shows_what_it_claimed_and_logged():
    text = run.render({**RESULTS, "scenarios": {"7": worker_without_broker()}})
    line = next(line for line in text.splitlines() if line.startswith("- 7:"))
    shown = [
        "worker exit codes: (worker-0: 0, worker-1: 0)",
        "web bells not rung lines: 197; pending after wait: 200",
        "completed after worker start s: 2.0",
        "claims: (vm:28003:694f0013: (1: 200)); upstream calls: 200",
        "(engines_started: 1, broker_refused_lines: 1, ready_lines: 0)",
        "ready after redis s: 1.8",
    ]
    assert [part for part in shown if part not in line] == []
    # The table's columns are not repeated, and every check held.
    assert "submitted" not in line and "Failed checks" not in line


def test_the_worker_started_without_a_broker_names_its_failed_checks_and_missed_deadlines():
    s7 = worker_without_broker(
        completed_after_worker_start_s=None,
        ready_after_redis_s=None,
        checks={"still_pending_after_wait": False, "no_ready_while_broker_down": True},
        passed=False,
    )
    text = run.render({**RESULTS, "scenarios": {"7": s7}})
    assert "completed after worker start s: none" in text
    assert "ready after redis s: none" in text
    assert "Failed checks: still pending after wait." in text


def webhooks_through_worker_kill(**overrides: object) -> dict:
    return (
        scenario(
            submitted=100,
            accepted=100,
            completed=100,
            refused={},
            held_at_kill=50,
            held_arrived_again=50,
            deliveries_at_kill={"pending": 50, "sending": 50},
            deliveries_at_end={"delivered": 100},
            delivery_attempts={"1": 50, "2": 50},
            all_delivered_after_kill_s=63.2,
            webhooks={
                "received": 150,
                "invalid_signatures": 0,
                "jobs_notified": 100,
                "unnotified": 0,
                "duplicates": 50,
                "jobs_notified_more_than_once": 50,
            },
            checks={"every_job_notified": True, "held_notices_sent_again": True},
        )
        | overrides
    )


def test_the_webhook_scenario_shows_notices_held_delivered_and_duplicated():
    text = run.render({**RESULTS, "scenarios": {"8": webhooks_through_worker_kill()}})
    line = next(line for line in text.splitlines() if line.startswith("- 8:"))
    shown = [
        "held at kill: 50; held arrived again: 50",
        "deliveries at kill: (pending: 50, sending: 50)",
        "received: 150, invalid_signatures: 0, jobs_notified: 100, unnotified: 0",
        "duplicates: 50, jobs_notified_more_than_once: 50",
        "deliveries at end: (delivered: 100); delivery attempts: (1: 50, 2: 50)",
        "all delivered after kill s: 63.2",
    ]
    assert [part for part in shown if part not in line] == []
    assert "Failed checks" not in line


def test_the_webhook_scenario_names_its_failed_checks():
    s8 = webhooks_through_worker_kill(
        checks={"every_job_notified": False, "held_notices_sent_again": True}, passed=False
    )
    text = run.render({**RESULTS, "scenarios": {"8": s8}})
    assert "Failed checks: every job notified." in text
