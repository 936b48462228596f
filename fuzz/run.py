"""Fuzz the gateway: ``python -m fuzz.run [--requests N] [--seed S]`` (or ``make fuzz``).

Starts the gateway's web process (the harness's stack) on 127.0.0.1 on a scratch SQLite database
and the embedded broker, migrated, with one virtual key; runs schemathesis against its served
document until at least N requests have been sent (fuzz/campaign.py), stops the process, prints
the figures and writes ``fuzz/RESULTS.md`` and ``fuzz/results.json``. Exits 1 when a response was
a 5xx or did not conform to the document. No worker runs: accepted jobs stay pending, which is
all the document promises for a submit, and the provider is a closed local port.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from fuzz import campaign, report
from harness import runs
from harness.procs import Procs
from harness.stack import Stack, StackConfig

DEFAULT_REQUESTS = 1000
DEFAULT_SEED = 20261126


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS, help="at least this many")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the first round")
    args = parser.parse_args(argv)
    if args.requests < 1:
        parser.error("--requests must be positive")
    started = time.monotonic()
    log = runs.logger()
    with tempfile.TemporaryDirectory(prefix="gateway-fuzz-") as scratch:
        root = Path(scratch)
        with Procs(root / "logs") as procs:
            log("starting the gateway's web process on a scratch SQLite database")
            var_dir = root / "var"
            database_url = f"sqlite:///{var_dir / 'gateway.sqlite3'}"
            config = StackConfig(database_url, var_dir, "fuzz", web_processes=1, web_threads=4)
            stack = Stack(procs, config)
            stack.prepare("fuzz")
            stack.start_web()
            log(f"fuzzing {stack.web_url}/openapi.json until {args.requests} requests")
            tally = campaign.fuzz(
                stack.web_url, stack.key, target=args.requests, seed=args.seed, log=log
            )
            alive = procs.alive("web")
        log("gateway stopped")
    results = tally.as_dict()
    results["seconds"] = round(time.monotonic() - started, 1)
    command = " ".join(["python -m fuzz.run", *(sys.argv[1:] if argv is None else argv)])
    path = report.write(results, command)
    print()
    print(report.table(results))
    print(f"\nwritten: {path} and {path.with_name('results.json')}")
    clean = alive and not (tally.server_errors or tally.nonconforming or tally.engine_errors)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
