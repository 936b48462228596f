"""Run the reliability drill: ``python -m drill.run [--long] [--only 1,3]`` (or ``make drill``).

Starts a private Postgres cluster and Redis server, the fake upstream and the gateway (granian
web server, two Celery workers, beat) on 127.0.0.1, runs the scenarios, stops every process it
started and writes its table (below it, each scenario's own figures) to ``RELIABILITY.md`` and
the raw figures to ``drill/results.json``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from drill.observe import DRILL_PRICE, DRILL_SETTINGS, MODEL, Drill, Ledger, drill_config, words
from drill.scenarios import LONG, SCENARIOS, SHORT, Sizes
from drill.services import PrivatePostgres, PrivateRedis
from harness import runs
from harness.procs import Procs
from harness.stack import REPO, UNREACHED_LIMITS, Stack, ensure_database

DRILL_DIR = REPO / ".drill"
REPORT = REPO / "RELIABILITY.md"
RAW = Path(__file__).resolve().parent / "results.json"
TITLES = {name: title for name, (title, _) in SCENARIOS.items()}


COLUMNS = ["#", "scenario", "submitted", "accepted (202)", "completed", "failed (by code)"]
COLUMNS += ["lost", "duplicated", "charged twice", "unanswered", "refused (by status)"]
COLUMNS += ["own condition", "result"]
# What the table and the verdict already show, or the run's bookkeeping.
NOT_DETAILED = {*Ledger().summary(), "extra_condition", "extra_ok", "passed", "checks"}
NOT_DETAILED |= {"postgres_errors", "scenario_seconds", "lost_ids", "changed_after_seen"}

INTRO = """\
The promise: once a client got a 202, the job reaches `completed` or `failed`, whatever crashes
in between. Each scenario injects a fault into real processes on 127.0.0.1 (the drill's own
Postgres cluster and Redis server, the gateway's granian web server, two Celery workers and
beat) and accounts for every submit. How to run it: the README's *Reliability drill*."""

LEGEND = """\
**lost**: accepted, but not `completed`/`failed` at the final poll after the deadline.
**duplicated**: a finished job whose outcome changed after a poll had shown it, or a second job
row from one submit. **charged twice**: charges in the keys' spend ledger beyond one per job that
carries a cost (every completed job must carry one; the drill's model is priced); the drill's key
has every limit, unreachable, and a scenario also fails when the keys' counters of jobs pending
or processing differ from the job table's.
**unanswered**: no HTTP answer at all (not counted as accepted). **refused**: any answer but
202."""


def row(number: str, title: str, data: dict[str, Any] | None) -> list[str]:
    """One table row; a scenario that was not run or raised says so."""
    if data is None:
        return [number, title, *["-"] * 10, "not run"]
    if "error" in data:
        return [number, title, *["-"] * 9, f"error: {data['error']}", "FAILED"]
    uncharged, miscounted = data["completed_uncharged"], data.get("pending_miscounted", 0)
    notes = [f"{uncharged:,} completed uncharged"] if uncharged else []
    notes += [f"pending counters off by {miscounted:,}"] if miscounted else []
    charged = figure(data["charged_twice"]) + (f" ({', '.join(notes)})" if notes else "")
    cells = [figure(data[name]) for name in ("submitted", "accepted", "completed")]
    cells += [runs.counts(data["failed"]), figure(data["lost"]), figure(data["duplicated"])]
    cells += [charged, figure(data["unanswered"]), runs.counts(data["refused"])]
    own = f"{data['extra_condition']}: {'yes' if data['extra_ok'] else 'NO'}"
    return [number, title, *cells, own, "passed" if data["passed"] else "FAILED"]


def table(results: dict[str, Any]) -> str:
    scenarios = results["scenarios"]
    return runs.table(COLUMNS, [row(n, title, scenarios.get(n)) for n, title in TITLES.items()])


def figure(value: Any) -> str:
    """A figure as it reads in a sentence: numbers with thousands separators, maps as pairs."""
    if isinstance(value, dict):
        return "(" + ", ".join(f"{k}: {figure(v)}" for k, v in value.items()) + ")"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(figure(v) for v in value) + "]"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "none" if value is None else str(value)


def render(results: dict[str, Any]) -> str:
    """The run's facts, the table, its legend, then each scenario's own figures (what the table
    has no column for) and failed checks, and the ERROR lines in Postgres' log."""
    shortened = ", ".join(f"`{k}={v}`" for k, v in DRILL_SETTINGS.items())
    facts = runs.facts(results, results["command"]) + f" ({results['seconds']:.0f} s)\n"
    facts += f"- Shortened for the drill: {shortened}; beat re-queues lapsed jobs every 15 s."
    lines, errors = [], []
    for n, data in results["scenarios"].items():
        logged = data.get("postgres_errors")
        errors.append(f"{n}: {runs.counts(logged) if logged else 'none'}")
        if "error" not in data:
            own = [f"{words(k)}: {figure(v)}" for k, v in data.items() if k not in NOT_DETAILED]
            failed = [words(name) for name, ok in data.get("checks", {}).items() if not ok]
            failed_checks = f" Failed checks: {', '.join(failed)}." if failed else ""
            lines.append(f"- {n}: {'; '.join(own) or 'no further figures'}.{failed_checks}")
    lines.append(f"- ERROR lines in the drill's Postgres log, by scenario: {'; '.join(errors)}.")
    return "\n\n".join([INTRO, facts, table(results), LEGEND, "\n".join(lines)])


def write(results: dict[str, Any]) -> Path:
    results["finished_at"] = runs.now()
    return runs.write(REPORT, RAW, "Reliability drill", results, render(results))


def _run_scenarios(drill: Drill, names: list[str], sizes: Sizes) -> dict[str, Any]:
    """Each scenario, then whatever it left stopped is started again; Postgres' ERROR lines
    during each are counted beside its figures."""
    errors: dict[str, dict[str, int]] = {}

    def scenario(name: str) -> dict[str, Any]:
        title, run = SCENARIOS[name]
        drill.log(f"scenario {name}: {title}")
        before = drill.postgres.logged_errors()
        try:
            return run(drill, sizes)
        finally:
            errors[name] = dict(drill.postgres.logged_errors() - before)
            drill.restore()

    results = runs.run_each(names, scenario, drill.log)
    for name, result in results.items():
        result["postgres_errors"] = errors[name]
        drill.log(f"scenario {name}: {'passed' if result.get('passed') else 'FAILED'}")
    return results


def main(argv: list[str] | None = None) -> int:
    args, names = runs.arguments(__doc__, argv, SCENARIOS, "--long", "a 10-minute soak, not 75 s")
    sizes = LONG if args.long else SHORT
    log = runs.logger()
    log_dir = DRILL_DIR / "logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    log(f"logs of every process: {log_dir}")
    results: dict[str, Any] = {"machine": runs.machine(), "sizes": sizes}
    started = time.monotonic()
    with Procs(log_dir) as procs:
        postgres, redis = PrivatePostgres(procs, DRILL_DIR), PrivateRedis(procs)
        try:
            log(f"private Postgres cluster in {postgres.root}, port {postgres.port}")
            postgres.create()
            log(f"private Redis on port {redis.port}")
            redis.start()
            ensure_database(database_url := postgres.url("gateway_drill"))
            stack = Stack(procs, drill_config(database_url, redis.url(), postgres.root / "var"))
            drill = Drill(stack, postgres, redis, log, tag=f"drill{int(time.time())}")
            log("migrating, making a virtual key")
            stack.prepare("drill", *UNREACHED_LIMITS)
            stack.manage("set_model_price", MODEL, *DRILL_PRICE)
            log("starting the upstream, the web server, two workers and beat")
            stack.start_upstream()
            stack.start_web()
            stack.start_workers(ready_with=MODEL)
            stack.start_beat()
            results["scenarios"] = _run_scenarios(drill, names, sizes)
            log("stopping every process")
        finally:
            procs.stop_all()
            postgres.remove()
    results["seconds"] = time.monotonic() - started
    results["load_average_at_end"] = os.getloadavg()
    given = argv if argv is not None else sys.argv[1:]
    results["command"] = "make drill" + (f" ARGS='{' '.join(given)}'" if given else "")
    write(results)
    print(f"\n{table(results)}\n\nwritten: RELIABILITY.md and drill/results.json")
    return 0 if all(results["scenarios"][name].get("passed") for name in names) else 1


if __name__ == "__main__":
    sys.exit(main())
