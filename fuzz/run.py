"""Fuzz the gateway: ``python -m fuzz.run [--requests N] [--seed S]`` (or ``make fuzz``).

Starts a gateway web process on 127.0.0.1 on a scratch SQLite database (fuzz/server.py), runs
schemathesis against its served document until at least N requests have been sent
(fuzz/campaign.py), stops the process, prints the figures and writes ``fuzz/RESULTS.md`` and
``fuzz/results.json``. Exits 1 when a response was a 5xx or did not conform to the document.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench.procs import Procs
from fuzz import campaign, report
from fuzz.server import start_gateway

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

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    with tempfile.TemporaryDirectory(prefix="gateway-fuzz-") as scratch:
        root = Path(scratch)
        with Procs(root / "logs") as procs:
            log("starting the gateway's web process on a scratch SQLite database")
            gateway = start_gateway(procs, root / "var")
            log(f"fuzzing {gateway.base_url}/openapi.json until {args.requests} requests")
            tally = campaign.fuzz(
                gateway.base_url, gateway.key, target=args.requests, seed=args.seed, log=log
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
