"""The benchmark's table: each scenario's figure next to its target, for the terminal and for
``bench/RESULTS.md`` (with the raw JSON beside it in ``bench/results.json``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import runs

BENCH_DIR = Path(__file__).resolve().parent
Figures = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """What a scenario's row says: what it measures, its target, its figure and whether met."""

    what: str
    target: str
    figure: Callable[[Figures], str]
    met: Callable[[Figures], bool]


@dataclass(frozen=True)
class Row:
    scenario: str
    what: str
    figure: str
    target: str
    met: bool | None  # None: not measured in this run

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT met", None: "not run"}[self.met]


def _versus_reference(what: str) -> Target:
    return Target(
        f"{what} ÷ bare reference",
        "≥ 0.45",
        lambda d: (
            f"{d['ratio']:.2f} ({d['gateway']['rate']:.0f}/s vs {d['reference']['rate']:.0f}/s)"
        ),
        lambda d: d["ratio"] >= 0.45,
    )


def _fair_share_met(d: Figures) -> bool:
    """p99 within 2 s of the upstream latency, every submit completed, the backlog outlasting it."""
    total = d["end_to_end_ms"]
    return (
        total["n"] == d["submits"]["ok"] > 0
        and total["p99"] <= d["upstream_latency_ms"] + 2000
        and d["backlog_pending_after"] > 0
    )


TARGETS = {
    "s1": _versus_reference("accepted completions submits/s (64 connections)"),
    "s1chat": _versus_reference("accepted chat completions submits/s (64 connections)"),
    "s2": Target(
        "jobs completed/s at 1 s ÷ at 0 latency (backlog drained, steady rate)",
        "≥ 0.8 and ≥ 300/s at 1 s",
        lambda d: (
            f"{d['ratio']:.2f} ({d['one_second']['jobs_per_s']:.0f}/s vs "
            f"{d['zero']['jobs_per_s']:.0f}/s, {d['one_second']['finished']:,} jobs each; "
            f"whole runs {d['one_second']['whole_run_jobs_per_s']:.0f}/s vs "
            f"{d['zero']['whole_run_jobs_per_s']:.0f}/s)"
        ),
        lambda d: d["ratio"] >= 0.8 and d["one_second"]["jobs_per_s"] >= 300,
    ),
    "s3": Target(
        "added latency at a steady 50 jobs/s",
        "p50 ≤ 15 ms, p99 ≤ 100 ms",
        lambda d: (
            f"p50 {d['added_ms']['p50']:.1f} ms, p99 {d['added_ms']['p99']:.1f} ms "
            f"({d['added_ms']['n']:.0f} jobs)"
        ),
        lambda d: (
            d["added_ms"]["n"] > 0 and d["added_ms"]["p50"] <= 15 and d["added_ms"]["p99"] <= 100
        ),
    ),
    "s4": _versus_reference("polls/s of a completed completion job"),
    "s4chat": _versus_reference("polls/s of a completed chat completion job"),
    "s5": Target(
        "peak RSS of all workers, 1,000 jobs in flight at 5 s",
        "≤ 1 GiB",
        lambda d: (
            f"{d['peak_rss_mib']:.0f} MiB ({d['workers']} workers, "
            f"{d['peak_in_flight_upstream']} calls in flight at the upstream)"
        ),
        lambda d: d["peak_rss_bytes"] <= 2**30 and (d["peak_in_flight_upstream"] or 0) >= d["jobs"],
    ),
    "s6": Target(
        "purge of expired rows while submits continue",
        "≥ 100k rows/s, longest statement ≤ 1 s",
        lambda d: (
            f"{d['purge']['rows_per_s']:,.0f} rows/s, "
            f"longest {d['purge']['longest_statement_s']:.3f} s "
            f"({d['purge']['rows']:,} rows; {d['submits_during']['accepted']:,} submits accepted "
            f"meanwhile, {d['submits_during']['not_accepted']} not)"
        ),
        lambda d: (
            d["purge"]["rows_per_s"] >= 100_000
            and d["purge"]["longest_statement_s"] <= 1.0
            and d["submits_during"]["not_accepted"] == 0
        ),
    ),
    "s7": Target(
        "vs LiteLLM 1.108.7: submits/s and completed jobs/s (1 s latency)",
        "both ≥ 3x",
        lambda d: (
            f"submits {d['submit_ratio']:.1f}x ({d['gateway_submits']['rate']:.0f}/s vs "
            f"{d['peer_background_submits']['rate']:.0f}/s background); completed "
            f"{d['completed_ratio']:.1f}x ({d['gateway_completed']['completed_per_s']:.0f}/s vs "
            f"{d['peer_completed'].get('completed_per_s') or 0:.0f}/s; peer lost "
            f"{d['peer_completed'].get('lost')}); peer plain /v1/completions "
            f"{d['peer_plain_completions']['rate']:.0f}/s"
        ),
        lambda d: d["submit_ratio"] >= 3 and d["completed_ratio"] >= 3,
    ),
    "s8": Target(
        "another key's jobs behind one key's 20,000-job backlog, 1 s latency, 10 jobs/s",
        "p99 ≤ latency + 2 s (3.0 s)",
        lambda d: (
            f"p50 {d['end_to_end_ms']['p50'] / 1000:.2f} s, "
            f"p99 {d['end_to_end_ms']['p99'] / 1000:.2f} s submit to completed "
            f"({d['end_to_end_ms']['n']:.0f} of {d['submits']['ok']} jobs; "
            f"{d['backlog_pending_after']:,} backlog jobs still pending after)"
        ),
        _fair_share_met,
    ),
}
ORDER = ("s1", "s1chat", "s2", "s3", "s4", "s4chat", "s5", "s6", "s7", "s8")


def _label(key: str) -> str:
    """``s1chat`` -> ``S1 chat``."""
    return key[:2].upper() + (f" {key[2:]}" if key[2:] else "")


def rows(results: dict[str, Any]) -> list[Row]:
    """One row per scenario, from the raw results (a scenario that failed shows its error)."""
    out = []
    for key in ORDER:
        target, data = TARGETS[key], results.get(key)
        figure, met = "-", None
        if data is not None and "error" in data:
            figure, met = f"failed: {data['error']}", False
        elif data is not None:
            figure, met = target.figure(data), target.met(data)
        out.append(Row(_label(key), target.what, figure, target.target, met))
    return out


def table(results: dict[str, Any]) -> str:
    return runs.table(
        ("#", "what", "figure", "target", ""),
        [(row.scenario, row.what, row.figure, row.target, row.verdict) for row in rows(results)],
    )


def write(results: dict[str, Any], command: str, quick: bool) -> Path:
    """Write RESULTS.md and results.json; return the markdown's path."""
    mode = "quick (--quick: shorter runs, 1,500 jobs in S2, 100k rows in S6)" if quick else "full"
    about = (
        runs.facts(results, command) + f" ({mode})\n- Everything ran on 127.0.0.1, the load "
        "generator included; figures compared with each other were measured in this same run. "
        "Raw figures: `bench/results.json`."
    )
    how = "How each figure is measured: see `bench/README.md`."
    markdown, raw = BENCH_DIR / "RESULTS.md", BENCH_DIR / "results.json"
    return runs.write(markdown, raw, "Benchmark results", results, about, table(results), how)
