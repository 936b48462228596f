"""Run the benchmark suite: ``python -m bench.run [--quick] [--only s1,s4]`` (or ``make bench``).

Starts the fake upstream, the gateway (granian + Celery workers on Postgres and Redis), the
bare reference handlers and the LiteLLM peer on 127.0.0.1, runs the scenarios, stops every
process it started, prints the table and writes ``bench/RESULTS.md`` and ``bench/results.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from bench import report, scenarios
from bench.procs import Procs
from bench.stack import REPO, Stack, StackConfig

SCENARIOS: dict[str, Callable[[Stack, scenarios.Sizes, Callable[[str], None]], dict[str, Any]]] = {
    "s1": scenarios.s1_submits,
    "s4": scenarios.s4_polls,
    "s3": scenarios.s3_added_latency,
    "s2": scenarios.s2_throughput,
    "s5": scenarios.s5_memory,
    "s6": scenarios.s6_purge,
    "s7": scenarios.s7_peer,
}


def _logger() -> Callable[[str], None]:
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    return log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short runs (under two minutes)")
    parser.add_argument(
        "--only", default="", help="comma-separated scenarios to run, e.g. s1,s4 (default: all)"
    )
    args = parser.parse_args(argv)
    chosen = [name.strip().lower() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)}")
    names = [name for name in SCENARIOS if not chosen or name in chosen]
    sizes = scenarios.Sizes.quick() if args.quick else scenarios.Sizes.full()
    log = _logger()
    results: dict[str, Any] = {"machine": report.machine(), "sizes": sizes.__dict__}
    log_dir = REPO / ".bench" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log(f"logs of every process: {log_dir}")
    with Procs(log_dir) as procs:
        stack = Stack(procs, StackConfig(), log)
        log("preparing the database (migrate, a virtual key)")
        stack.prepare()
        log("starting the upstream, the gateway's web server and workers, the reference")
        stack.start_upstream()
        stack.start_web()
        stack.start_reference()
        for name in names:
            started = time.monotonic()
            # S1 and S4 measure the web path alone, like the reference: no workers running.
            if name in ("s1",):
                stack.stop_workers()
            elif not stack.worker_pids():
                scenarios.start_workers(stack, log)
            try:
                results[name] = SCENARIOS[name](stack, sizes, log)
            except Exception as exc:
                log(f"{name.upper()} failed: {exc!r}")
                traceback.print_exc()
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            results[name]["scenario_seconds"] = round(time.monotonic() - started, 1)
            log(f"{name.upper()} done in {time.monotonic() - started:.1f} s")
        log("stopping every process")
    command = "make bench-quick" if args.quick else "make bench"
    if chosen:
        command = f"python -m bench.run {' '.join(argv or sys.argv[1:])}"
    path = report.write(results, command, args.quick)
    print()
    print(report.table(results))
    raw = path.with_name("results.json")
    print(f"\nwritten: {path.relative_to(REPO)} and {raw.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
