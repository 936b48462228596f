"""The benchmark's table: each scenario's figure against its target, and the runner's options."""

from __future__ import annotations

import json

import pytest

from bench import run, scenarios


def load(rate: float) -> dict:
    return {"rate": rate, "ok": int(rate), "statuses": {"202": int(rate)}}


RESULTS = {
    "machine": {
        "cpus": 2,
        "cpu_model": "test cpu",
        "python": "3.11",
        "load_average_at_start": [1, 1, 1],
    },
    "s1": {"gateway": load(500), "reference": load(1000), "ratio": 0.5},
    "s1chat": {"gateway": load(440), "reference": load(1000), "ratio": 0.44},
    "s2": {
        "one_second": {"jobs_per_s": 350.0, "whole_run_jobs_per_s": 300.0, "finished": 5000},
        "zero": {"jobs_per_s": 500.0, "whole_run_jobs_per_s": 450.0, "finished": 5000},
        "ratio": 0.7,
    },
    "s3": {"error": "RuntimeError: upstream down"},
    "s5": {
        "jobs": 1000,
        "workers": 2,
        "peak_rss_bytes": 300 * 2**20,
        "peak_rss_mib": 300.0,
        "peak_in_flight_upstream": 1000,
    },
}


def by_scenario() -> dict[str, run.Row]:
    return {row.scenario: row for row in run.rows(RESULTS)}


def test_a_ratio_at_or_over_its_target_is_met_and_shows_both_rates():
    row = by_scenario()["S1"]
    assert row.met is True
    assert row.figure == "0.50 (500/s vs 1000/s)"


def test_the_chat_variant_has_its_own_row_and_the_same_target():
    row = by_scenario()["S1 chat"]
    assert "chat completions submits" in row.what
    assert (row.met, row.target) == (False, "≥ 0.45")


def test_a_ratio_under_its_target_is_not_met():
    row = by_scenario()["S2"]
    assert row.met is False
    assert "350/s vs 500/s" in row.figure


def test_a_failed_scenario_shows_its_error_and_counts_as_not_met():
    row = by_scenario()["S3"]
    assert (row.met, row.figure) == (False, "failed: RuntimeError: upstream down")


def test_memory_is_met_only_when_all_jobs_were_in_flight():
    assert by_scenario()["S5"].met is True
    short = {**RESULTS, "s5": {**RESULTS["s5"], "peak_in_flight_upstream": 600}}
    assert {row.scenario: row for row in run.rows(short)}["S5"].met is False


def test_scenarios_not_run_are_listed_as_such():
    rows = by_scenario()
    assert [rows[name].verdict for name in ("S4", "S4 chat", "S6", "S7")] == ["not run"] * 4


def test_write_puts_the_table_and_the_raw_json_side_by_side(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "BENCH_DIR", tmp_path)
    path = run.write(RESULTS, "make bench-quick", quick=True)

    text = path.read_text()
    assert "make bench-quick" in text
    assert "| S1 | accepted completions submits/s" in text
    assert "2 CPUs (test cpu)" in text
    assert json.loads((tmp_path / "results.json").read_text())["s1"]["ratio"] == 0.5


def test_quick_sizes_are_smaller_than_the_full_run():
    quick, full = scenarios.QUICK, scenarios.FULL
    assert quick.seconds < full.seconds
    assert quick.drain_jobs < full.drain_jobs == 5000
    assert quick.purge_rows < full.purge_rows == 1_000_000
    assert quick.inflight_jobs == full.inflight_jobs == 1000


def test_the_runner_refuses_an_unknown_scenario(capsys):
    with pytest.raises(SystemExit) as exited:
        run.main(["--only", "s1,s9"])
    assert exited.value.code == 2
    assert "unknown scenarios: s9" in capsys.readouterr().err


def test_submit_bodies_are_valid_requests_for_the_bench_model():
    body = json.loads(scenarios.submit_body(7))
    assert body == {"model": "openai/gpt-bench", "prompt": "Say hello to job 7", "max_tokens": 16}
    chat = json.loads(scenarios.CHAT.body(7))
    assert chat["model"] == "openai/gpt-bench"
    assert chat["messages"][-1] == {"role": "user", "content": "Say hello to job 7"}


def fair_share(p99_ms: float, backlog_left: int) -> dict:
    return {
        "upstream_latency_ms": 1000.0,
        "submits": load(300),
        "backlog_pending_after": backlog_left,
        "end_to_end_ms": {"p50": 1400.0, "p99": p99_ms, "n": 300},
    }


def test_fair_share_is_met_within_two_seconds_of_the_latency_while_the_backlog_lasts():
    def row(p99_ms: float, backlog_left: int) -> run.Row:
        results = {**RESULTS, "s8": fair_share(p99_ms, backlog_left)}
        return {row.scenario: row for row in run.rows(results)}["S8"]

    met = row(2900.0, 10_000)
    assert met.met is True
    assert met.figure.startswith("p50 1400 ms, p99 2900 ms submit to completed (300 of 300 jobs")
    assert row(3100.0, 10_000).met is False
    # Once the backlog is gone nothing was shared, so the figure proves nothing.
    assert row(2900.0, 0).met is False
