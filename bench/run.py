"""Run the benchmark suite: ``python -m bench.run [--quick] [--only s1,s4chat]``, or ``make bench``.

What it starts and measures: bench/README.md. It stops every process it started, prints the
table and writes ``bench/RESULTS.md`` and ``bench/results.json``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from bench import report, scenarios
from bench.scenarios import SCENARIOS, BenchStack, Sizes
from harness import runs
from harness.procs import Procs, free_port
from harness.stack import REPO


def main(argv: list[str] | None = None) -> int:
    args, names = runs.arguments(__doc__, argv, SCENARIOS, "--quick", "short runs, for a check")
    sizes = Sizes.quick() if args.quick else Sizes.full()
    log = runs.logger()
    results: dict[str, Any] = {"machine": runs.machine(), "sizes": sizes.__dict__}
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
            return SCENARIOS[name](stack, sizes, log)

        results |= runs.run_each(names, scenario, log)
        log("stopping every process")
    command = "make bench-quick" if args.quick else "make bench"
    if args.only:
        command = f"python -m bench.run {' '.join(argv or sys.argv[1:])}"
    report.write(results, command, args.quick)
    print(f"\n{report.table(results)}\n\nwritten: bench/RESULTS.md and bench/results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
