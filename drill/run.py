"""Run the reliability drill: ``python -m drill.run [--long] [--only 1,3]`` (or ``make drill``).

Starts a private Postgres cluster and Redis server, the fake upstream and the gateway (granian
web server, two Celery workers, beat) on 127.0.0.1, runs the scenarios, stops every process it
started and writes ``RELIABILITY.md`` and ``drill/results.json``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import Any

from drill import report
from drill.observe import DRILL_PRICE, MODEL, Drill, drill_config
from drill.private_services import PrivatePostgres, PrivateRedis
from drill.scenarios import SCENARIOS, Sizes
from harness import runs
from harness.procs import Procs, free_port
from harness.stack import REPO, Stack, ensure_database

DRILL_DIR = REPO / ".drill"


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
    sizes = Sizes.long() if args.long else Sizes.short()
    log = runs.logger()
    log_dir = DRILL_DIR / "logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    log(f"logs of every process: {log_dir}")
    results: dict[str, Any] = {"machine": runs.machine(), "sizes": sizes.__dict__}
    started = time.monotonic()
    with Procs(log_dir) as procs:
        postgres = PrivatePostgres(procs, DRILL_DIR)
        try:
            log(f"private Postgres cluster in {postgres.root}, port {postgres.port}")
            postgres.create()
            postgres.start()
            redis = PrivateRedis(procs)
            log(f"private Redis on port {redis.port}")
            redis.start()
            database_url = postgres.url("gateway_drill")
            ensure_database(database_url)
            upstream_url = f"http://127.0.0.1:{free_port()}"
            config = drill_config(database_url, redis.url(), postgres.root / "var", upstream_url)
            stack = Stack(procs, config)
            drill = Drill(stack, postgres, redis, log, tag=f"drill{int(time.time())}")
            log("migrating, making a virtual key")
            stack.prepare("drill")
            stack.truncate()
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
    titles = {name: title for name, (title, _) in SCENARIOS.items()}
    report.write(results, titles)
    print(f"\n{report.table(results, titles)}\n\nwritten: RELIABILITY.md and drill/results.json")
    return 0 if all(results["scenarios"][name].get("passed") for name in names) else 1


if __name__ == "__main__":
    sys.exit(main())
