"""Run the benchmark suite: ``python -m bench.run [--quick] [--only s1,s4chat]``, or ``make bench``.

What it starts and measures: bench/README.md. It stops every process it started, prints the
table (each scenario's figure next to its target) and writes ``bench/RESULTS.md`` and
``bench/results.json``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from bench import scenarios
from bench.scenarios import SCENARIOS, BenchStack
from harness import runs
from harness.procs import Procs, free_port
from harness.stack import REPO

BENCH_DIR = Path(__file__).resolve().parent
Figures = dict[str, Any]


class Target(NamedTuple):
    """A scenario's row: what it measures, its target, its figure (a ``str.format`` template of
    its results) and whether the target was met."""

    what: str
    target: str
    figure: str
    met: Callable[[Figures], bool]


class Row(NamedTuple):
    scenario: str
    what: str
    figure: str
    target: str
    met: bool | None  # None: not measured in this run

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT met", None: "not run"}[self.met]


def _versus_reference(what: str) -> Target:
    figure = "{ratio:.2f} ({gateway[rate]:.0f}/s vs {reference[rate]:.0f}/s)"
    return Target(f"{what} ÷ bare reference", "≥ 0.45", figure, lambda d: d["ratio"] >= 0.45)


def _fair_share_met(d: Figures) -> bool:
    """p99 within 2 s of the upstream latency, every submit completed, the backlog outlasting it."""
    total = d["end_to_end_ms"]
    return (
        total["n"] == d["submits"]["ok"] > 0
        and total["p99"] <= d["upstream_latency_ms"] + 2000
        and d["backlog_pending_after"] > 0
    )


TARGETS: dict[str, Target] = {
    "s1": _versus_reference("accepted completions submits/s (64 connections)"),
    "s1chat": _versus_reference("accepted chat completions submits/s (64 connections)"),
    "s2": Target(
        "jobs completed/s at 1 s ÷ at 0 latency (backlog drained, steady rate)",
        "≥ 0.8 and ≥ 300/s at 1 s",
        "{ratio:.2f} ({one_second[jobs_per_s]:.0f}/s vs {zero[jobs_per_s]:.0f}/s, "
        "{one_second[finished]:,} jobs each; whole runs {one_second[whole_run_jobs_per_s]:.0f}/s "
        "vs {zero[whole_run_jobs_per_s]:.0f}/s)",
        lambda d: d["ratio"] >= 0.8 and d["one_second"]["jobs_per_s"] >= 300,
    ),
    "s3": Target(
        "added latency at a steady 50 jobs/s",
        "p50 ≤ 15 ms, p99 ≤ 100 ms",
        "p50 {added_ms[p50]:.1f} ms, p99 {added_ms[p99]:.1f} ms ({added_ms[n]:.0f} jobs)",
        lambda d: (
            d["added_ms"]["n"] > 0 and d["added_ms"]["p50"] <= 15 and d["added_ms"]["p99"] <= 100
        ),
    ),
    "s4": _versus_reference("polls/s of a completed completion job"),
    "s4chat": _versus_reference("polls/s of a completed chat completion job"),
    "s5": Target(
        "peak RSS of all workers, 1,000 jobs in flight at 5 s",
        "≤ 1 GiB",
        "{peak_rss_mib:.0f} MiB ({workers} workers, {peak_in_flight_upstream} calls in flight at "
        "the upstream)",
        lambda d: d["peak_rss_bytes"] <= 2**30 and (d["peak_in_flight_upstream"] or 0) >= d["jobs"],
    ),
    "s6": Target(
        "purge of expired rows while submits continue",
        "≥ 100k rows/s, longest statement ≤ 1 s",
        "{purge[rows_per_s]:,.0f} rows/s, longest {purge[longest_statement_s]:.3f} s "
        "({purge[rows]:,} rows; {submits_during[accepted]:,} submits accepted meanwhile, "
        "{submits_during[not_accepted]} not)",
        lambda d: (
            d["purge"]["rows_per_s"] >= 100_000
            and d["purge"]["longest_statement_s"] <= 1.0
            and d["submits_during"]["not_accepted"] == 0
        ),
    ),
    "s7": Target(
        "vs LiteLLM 1.108.7: submits/s and completed jobs/s (1 s latency)",
        "both ≥ 3x",
        "submits {submit_ratio:.1f}x ({gateway_submits[rate]:.0f}/s vs "
        "{peer_background_submits[rate]:.0f}/s background); completed {completed_ratio:.1f}x "
        "({gateway_completed[completed_per_s]:.0f}/s vs {peer_completed[completed_per_s]:.0f}/s; "
        "peer lost {peer_completed[lost]}); peer plain /v1/completions "
        "{peer_plain_completions[rate]:.0f}/s",
        lambda d: d["submit_ratio"] >= 3 and d["completed_ratio"] >= 3,
    ),
    "s8": Target(
        "another key's jobs behind one key's 20,000-job backlog, 1 s latency, 10 jobs/s",
        "p99 ≤ latency + 2 s (3,000 ms)",
        "p50 {end_to_end_ms[p50]:.0f} ms, p99 {end_to_end_ms[p99]:.0f} ms submit to completed "
        "({end_to_end_ms[n]:.0f} of {submits[ok]} jobs; {backlog_pending_after:,} backlog jobs "
        "still pending after)",
        _fair_share_met,
    ),
}


def rows(results: dict[str, Any]) -> list[Row]:
    """One row per scenario, from the raw results (a scenario that failed shows its error)."""
    out = []
    for key, (what, target, template, met_by) in TARGETS.items():
        data, figure, met = results.get(key), "-", None
        if data is not None and "error" in data:
            figure, met = f"failed: {data['error']}", False
        elif data is not None:
            figure, met = template.format(**data), met_by(data)
        label = f"{key[:2].upper()} {key[2:]}".strip()  # s1chat: S1 chat
        out.append(Row(label, what, figure, target, met))
    return out


def table(results: dict[str, Any]) -> str:
    lines = [(*row[:4], row.verdict) for row in rows(results)]
    return runs.table(("#", "what", "figure", "target", ""), lines)


def write(results: dict[str, Any], command: str, quick: bool) -> Path:
    mode = "quick (--quick: shorter runs, 1,500 jobs in S2, 100k rows in S6)" if quick else "full"
    about = (
        runs.facts(results, command) + f" ({mode})\n- Everything ran on 127.0.0.1, the load "
        "generator included; figures compared with each other were measured in this same run. "
        "Raw figures: `bench/results.json`."
    )
    how = "How each figure is measured: see `bench/README.md`."
    markdown, raw = BENCH_DIR / "RESULTS.md", BENCH_DIR / "results.json"
    return runs.write(markdown, raw, "Benchmark results", results, about, table(results), how)


def main(argv: list[str] | None = None) -> int:
    args, names = runs.arguments(__doc__, argv, SCENARIOS, "--quick", "short runs, for a check")
    sizes = scenarios.QUICK if args.quick else scenarios.FULL
    log = runs.logger()
    results: dict[str, Any] = {"machine": runs.machine(), "sizes": sizes._asdict()}
    log_dir = REPO / ".bench" / "logs"
    log(f"logs of every process: {log_dir}")
    with Procs(log_dir) as procs:
        stack = BenchStack(procs, scenarios.bench_config(f"http://127.0.0.1:{free_port()}"))
        log("preparing the database (migrate, a virtual key)")
        stack.prepare(f"bench-{int(time.time())}")
        log("starting the upstream, the gateway's web server and workers, the reference")
        stack.start_upstream()
        stack.start_web()
        stack.start_reference()
        scenarios.warm_up(stack, sizes, log)

        def scenario(name: str) -> dict[str, Any]:
            # S1 measures the web path alone, like the reference: no workers running.
            if name in ("s1", "s1chat"):
                stack.stop_workers()
            elif name != "s8" and not stack.worker_pids():  # S8 starts its own, fewer slots
                stack.start_workers(ready_with=scenarios.BENCH_MODEL)
            stack.truncate()
            return SCENARIOS[name](stack, sizes, log)

        results |= runs.run_each(names, scenario, log)
        log("stopping every process")
    command = "make bench-quick" if args.quick else "make bench"
    if args.only:
        command = f"python -m bench.run {' '.join(argv or sys.argv[1:])}"
    write(results, command, args.quick)
    print(f"\n{table(results)}\n\nwritten: bench/RESULTS.md and bench/results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
