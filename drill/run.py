"""Run the reliability drill: ``python -m drill.run [--long] [--only 1,3]`` (or ``make drill``).

Starts a private Postgres cluster and Redis server, the fake upstream (with fault modes) and the
gateway (granian web server, two Celery workers, beat) on 127.0.0.1, runs the scenarios, stops
every process it started and writes ``RELIABILITY.md`` and ``drill/results.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from bench import report as bench_report
from bench import scenarios as bench_scenarios
from bench.procs import Procs
from bench.stack import StackConfig
from drill import report
from drill.harness import Drill
from drill.private_services import PrivatePostgres, PrivateRedis
from drill.scenarios import SCENARIOS, Sizes
from drill.stack import DRILL_DIR, DrillStack

DATABASE = "gateway_drill"


def _logger() -> Callable[[str], None]:
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    return log


def _chosen(parser: argparse.ArgumentParser, only: str) -> list[str]:
    chosen = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)} (there are 1-{len(SCENARIOS)})")
    return [name for name in SCENARIOS if not chosen or name in chosen]


def _run_scenarios(drill: Drill, names: list[str], sizes: Sizes) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in names:
        title, scenario = SCENARIOS[name]
        drill.log(f"scenario {name}: {title}")
        started = time.monotonic()
        errors_before = drill.postgres.logged_errors()
        try:
            results[name] = scenario(drill, sizes)
        except Exception as exc:
            drill.log(f"scenario {name} raised {exc!r}")
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        results[name]["scenario_seconds"] = round(time.monotonic() - started, 1)
        results[name]["postgres_errors"] = dict(drill.postgres.logged_errors() - errors_before)
        verdict = "passed" if results[name].get("passed") else "FAILED"
        drill.log(f"scenario {name} {verdict} in {results[name]['scenario_seconds']} s")
        drill.restore()
    return results


def _start(drill: Drill) -> None:
    stack = drill.stack
    drill.log("migrating, making a virtual key")
    stack.prepare()
    drill.log("starting the upstream, the web server, two workers and beat")
    stack.start_upstream()
    stack.start_web()
    bench_scenarios.start_workers(stack, drill.log)
    stack.start_beat()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--long", action="store_true", help="a 10-minute soak (default: 75 s)")
    parser.add_argument("--only", default="", help="comma-separated scenarios, e.g. 1,3")
    args = parser.parse_args(argv)
    names = _chosen(parser, args.only)
    sizes = Sizes.long() if args.long else Sizes.short()
    log = _logger()
    log_dir = DRILL_DIR / "logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    log(f"logs of every process: {log_dir}")
    results: dict[str, Any] = {
        "machine": bench_report.machine(),
        "sizes": sizes.__dict__,
        "scenarios": {},
    }
    started = time.monotonic()
    with Procs(log_dir) as procs:
        postgres = PrivatePostgres(procs, DRILL_DIR)
        try:
            log(f"private Postgres cluster in {postgres.root}, port {postgres.port}")
            postgres.create()
            postgres.start()
            postgres.create_database(DATABASE)
            redis = PrivateRedis(procs)
            log(f"private Redis on port {redis.port}")
            redis.start()
            config = StackConfig(admin_url=postgres.url(), database=DATABASE, redis_url=redis.url())
            stack = DrillStack(procs, config, log, var_dir=postgres.root / "var")
            drill = Drill(stack, postgres, redis, log, tag=f"drill{int(time.time())}")
            _start(drill)
            results["scenarios"] = _run_scenarios(drill, names, sizes)
            log("stopping every process")
        finally:
            procs.stop_all()
            postgres.remove()
    results["seconds"] = time.monotonic() - started
    results["load_average_at_end"] = os.getloadavg()
    results["command"] = "make drill" + (
        f" ARGS='{' '.join(argv or sys.argv[1:])}'" if (argv or sys.argv[1:]) else ""
    )
    titles = {name: SCENARIOS[name][0] for name in SCENARIOS}
    path = report.write(results, titles)
    print()
    print(report.table(results, titles))
    print(f"\nwritten: {path.name} and drill/results.json")
    passed = all(results["scenarios"].get(name, {}).get("passed") for name in names)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
