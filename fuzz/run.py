"""Fuzz the gateway: ``python -m fuzz.run [--requests N] [--seed S]`` (or ``make fuzz``).

Starts the gateway's web process (the harness's stack) on 127.0.0.1 on a scratch SQLite database
and the embedded broker, migrated, with one virtual key; runs schemathesis against its served
document until at least N requests have been sent (fuzz/campaign.py), stops the process, prints
the figures and writes ``fuzz/RESULTS.md`` and ``fuzz/results.json``. Exits 1 when a response was
a 5xx or did not conform to the document. No worker runs: accepted jobs stay pending, which is
all the document promises for a submit, and the provider is a closed local port.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fuzz import campaign
from harness import runs
from harness.procs import Procs
from harness.stack import Stack, StackConfig

FUZZ_DIR = Path(__file__).resolve().parent
ABOUT = (
    "Schemathesis against the gateway's served `/openapi.json`, a real web process (granian) on "
    "127.0.0.1, a scratch SQLite database. Checks on every response: not a 5xx; status code, "
    "content type and body as the document declares."
)


def table(results: dict[str, Any]) -> str:
    """The figures as Markdown tables."""
    figures = [
        ("requests sent", results["requests"]),
        ("rounds (one seed each)", results["rounds"]),
        ("responses 5xx", results["server_errors"]),
        ("responses that do not conform to the document", results["nonconforming"]),
        ("distinct failures", len(results["failures"])),
    ]
    tables = [
        runs.table(("figure", "value"), figures),
        runs.table(("status", "responses"), results["statuses"].items()),
        runs.table(("operation", "requests"), results["by_operation"].items()),
    ]
    if results["failures"]:
        failures = [
            (f["check"], f["operation"], f"{f['title']}: {f['message']}", f["count"], f["example"])
            for f in results["failures"]
        ]
        tables.append(runs.table(("check", "operation", "failure", "times", "example"), failures))
    if results["engine_errors"]:
        errors = "\n".join(f"- {runs.cell(error)}" for error in results["engine_errors"])
        tables.append(f"Errors of the fuzzing run itself:\n\n{errors}")
    return "\n\n".join(tables)


def main(argv: list[str] | None = None) -> int:
    parser = runs.parser(__doc__)
    parser.add_argument("--requests", type=int, default=1000, help="at least this many")
    parser.add_argument("--seed", type=int, default=20261126, help="seed of the first round")
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
    command = " ".join(["python -m fuzz.run", *(sys.argv[1:] if argv is None else argv)])
    results: dict[str, Any] = {"finished_at": runs.now(), "command": command}
    results |= {"machine": runs.machine(), **tally.as_dict()}
    results["seconds"] = round(time.monotonic() - started, 1)
    markdown, raw = FUZZ_DIR / "RESULTS.md", FUZZ_DIR / "results.json"
    facts = runs.facts(results, command)
    runs.write(markdown, raw, "Fuzzing results", results, facts, ABOUT, table(results))
    print(f"\n{table(results)}\n\nwritten: {markdown} and {raw}")
    clean = alive and not (tally.server_errors or tally.nonconforming or tally.engine_errors)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
