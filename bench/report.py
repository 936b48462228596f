"""The benchmark's table: each scenario's figure next to its target, for the terminal and for
``bench/RESULTS.md`` (with the raw JSON beside it in ``bench/results.json``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import fairness
from harness import runs

BENCH_DIR = Path(__file__).resolve().parent


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


def _versus_reference(d: dict[str, Any]) -> tuple[str, bool]:
    figure = f"{d['ratio']:.2f} ({d['gateway']['rate']:.0f}/s vs {d['reference']['rate']:.0f}/s)"
    return figure, d["ratio"] >= 0.45


def rows(results: dict[str, Any]) -> list[Row]:
    """One row per scenario, from the raw results (a scenario that failed shows its error)."""
    out: list[Row] = []

    def add(key: str, what: str, target: str, build: Any) -> None:
        data = results.get(key)
        if data is None:
            out.append(Row(_label(key), what, "-", target, None))
        elif "error" in data:
            out.append(Row(_label(key), what, f"failed: {data['error']}", target, False))
        else:
            figure, met = build(data)
            out.append(Row(_label(key), what, figure, target, met))

    for key, kind in (("s1", "completions"), ("s1chat", "chat completions")):
        add(
            key,
            f"accepted {kind} submits/s ÷ bare reference (64 connections)",
            "≥ 0.45",
            _versus_reference,
        )
    add(
        "s2",
        "jobs completed/s at 1 s ÷ at 0 latency (backlog drained, steady rate)",
        "≥ 0.8 and ≥ 300/s at 1 s",
        lambda d: (
            f"{d['ratio']:.2f} ({d['one_second']['jobs_per_s']:.0f}/s vs "
            f"{d['zero']['jobs_per_s']:.0f}/s, {d['one_second']['finished']:,} jobs each; "
            f"whole runs {d['one_second']['whole_run_jobs_per_s']:.0f}/s vs "
            f"{d['zero']['whole_run_jobs_per_s']:.0f}/s)",
            d["ratio"] >= 0.8 and d["one_second"]["jobs_per_s"] >= 300,
        ),
    )
    add(
        "s3",
        "added latency at a steady 50 jobs/s",
        "p50 ≤ 15 ms, p99 ≤ 100 ms",
        lambda d: (
            f"p50 {d['added_ms']['p50']:.1f} ms, p99 {d['added_ms']['p99']:.1f} ms "
            f"({d['added_ms']['n']:.0f} jobs)",
            d["added_ms"]["n"] > 0 and d["added_ms"]["p50"] <= 15 and d["added_ms"]["p99"] <= 100,
        ),
    )
    for key, kind in (("s4", "completion"), ("s4chat", "chat completion")):
        add(
            key,
            f"polls/s of a completed {kind} job ÷ bare reference GET",
            "≥ 0.45",
            _versus_reference,
        )
    add(
        "s5",
        "peak RSS of all workers, 1,000 jobs in flight at 5 s",
        "≤ 1 GiB",
        lambda d: (
            f"{d['peak_rss_mib']:.0f} MiB ({d['workers']} workers, "
            f"{d['peak_in_flight_upstream']} calls in flight at the upstream)",
            d["peak_rss_bytes"] <= 2**30 and (d["peak_in_flight_upstream"] or 0) >= d["jobs"],
        ),
    )
    add(
        "s6",
        "purge of expired rows while submits continue",
        "≥ 100k rows/s, longest statement ≤ 1 s",
        lambda d: (
            f"{d['purge']['rows_per_s']:,.0f} rows/s, "
            f"longest {d['purge']['longest_statement_s']:.3f} s "
            f"({d['purge']['rows']:,} rows; {d['submits_during']['accepted']:,} submits accepted "
            f"meanwhile, {d['submits_during']['not_accepted']} not)",
            d["purge"]["rows_per_s"] >= 100_000
            and d["purge"]["longest_statement_s"] <= 1.0
            and d["submits_during"]["not_accepted"] == 0,
        ),
    )
    add(
        "s7",
        "vs LiteLLM 1.108.7: submits/s and completed jobs/s (1 s latency)",
        "both ≥ 3x",
        lambda d: (
            f"submits {d['submit_ratio']:.1f}x ({d['gateway_submits']['rate']:.0f}/s vs "
            f"{d['peer_background_submits']['rate']:.0f}/s background); completed "
            f"{d['completed_ratio']:.1f}x ({d['gateway_completed']['completed_per_s']:.0f}/s vs "
            f"{d['peer_completed'].get('completed_per_s') or 0:.0f}/s; peer lost "
            f"{d['peer_completed'].get('lost')}); peer plain /v1/completions "
            f"{d['peer_plain_completions']['rate']:.0f}/s",
            d["submit_ratio"] >= 3 and d["completed_ratio"] >= 3,
        ),
    )
    add(
        "s8",
        "another key's jobs behind one key's 20,000-job backlog, 1 s latency, 10 jobs/s",
        "p99 ≤ latency + 2 s (3.0 s)",
        lambda d: (
            f"p50 {d['end_to_end_ms']['p50'] / 1000:.2f} s, "
            f"p99 {d['end_to_end_ms']['p99'] / 1000:.2f} s submit to completed "
            f"({d['end_to_end_ms']['n']:.0f} of {d['submits']['ok']} jobs; "
            f"{d['backlog_pending_after']:,} backlog jobs still pending after)",
            fairness.met(d),
        ),
    )
    return out


def _label(key: str) -> str:
    """``s1chat`` -> ``S1 chat``."""
    return key[:2].upper() + (f" {key[2:]}" if key[2:] else "")


def table(results: dict[str, Any]) -> str:
    lines = ["| # | what | figure | target | |", "|---|---|---|---|---|"]
    for row in rows(results):
        lines.append(
            f"| {row.scenario} | {row.what} | {row.figure} | {row.target} | {row.verdict} |"
        )
    return "\n".join(lines)


def write(results: dict[str, Any], command: str, quick: bool) -> Path:
    """Write RESULTS.md and results.json; return the markdown's path."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    info = results.get("machine", {})
    mode = "quick (--quick: shorter runs, 1,500 jobs in S2, 100k rows in S6)" if quick else "full"
    text = "\n".join(
        [
            "# Benchmark results",
            "",
            f"- Date: {now}",
            f"- Machine: {info.get('cpus')} CPUs ({info.get('cpu_model')}), Python "
            f"{info.get('python')}, load average at start {info.get('load_average_at_start')}",
            f"- Command: `{command}` ({mode})",
            "- Everything ran on 127.0.0.1, the load generator included; figures compared with "
            "each other were measured in this same run. Raw figures: `bench/results.json`.",
            "",
            table(results),
            "",
            "How each figure is measured: see `bench/README.md`.",
            "",
        ]
    )
    path = BENCH_DIR / "RESULTS.md"
    runs.write(path, text, BENCH_DIR / "results.json", results)
    return path
