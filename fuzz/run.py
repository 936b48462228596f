"""Fuzz the gateway: ``python -m fuzz.run [--requests N] [--seed S]`` (or ``make fuzz``).

Starts the gateway's web process (the harness's stack) on 127.0.0.1 on a scratch SQLite database
and the embedded broker, migrated, with one virtual key, and fuzzes it through its served
document until at least N requests have been sent; stops the process, prints the figures and
writes ``fuzz/RESULTS.md`` and ``fuzz/results.json``. Exits 1 when a response was a 5xx or did
not conform to the document. No worker runs: accepted jobs stay pending, which is all the
document promises for a submit, and the provider is a closed local port.

Each round is one schemathesis engine run (examples, coverage, fuzzing and stateful phases) over
every operation of ``/openapi.json``, with its own seed; half the JSON bodies it generates carry
numbers past every bound (fuzz/numbers.py). Every other round lets schemathesis generate the
credentials instead of sending the virtual key.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.engine import Status, events, from_schema
from schemathesis.engine.recorder import ScenarioRecorder
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fuzz.numbers import add_extreme_numbers
from harness import runs
from harness.procs import Procs
from harness.stack import Stack, StackConfig

EXAMPLES_PER_ROUND = 50
MESSAGE_CHARS = 400
# What every fuzzed response is held to, here and in the bounded run of the test suite
# (tests/fuzz): never a 5xx, and only what the API document declares. A response that fails any
# check but the first does not conform to the document.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
CHECK_NAMES = tuple(check.__name__ for check in CHECKS)
CONFORMANCE_CHECKS = CHECK_NAMES[1:]


@dataclass
class Tally:
    """What the fuzzed gateway answered."""

    requests: int = 0
    rounds: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    server_errors: int = 0
    nonconforming: int = 0
    # One entry per distinct failure: which check, on which operation, and one request showing it.
    failures: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    engine_errors: list[str] = field(default_factory=list)

    def add(self, recorder: ScenarioRecorder) -> None:
        operation = recorder.label
        for case_id, interaction in recorder.interactions.items():
            response, request = interaction.response, interaction.request
            status = str(response.status_code) if response is not None else "no response"
            self.requests += 1
            self.statuses[status] += 1
            self.by_operation[operation] += 1
            self.server_errors += response is not None and response.status_code >= 500
            checks = recorder.checks.get(case_id, [])
            failed = [c for c in checks if c.status == Status.FAILURE and c.name in CHECK_NAMES]
            self.nonconforming += any(check.name in CONFORMANCE_CHECKS for check in failed)
            for check in failed:
                failure = check.failure_info.failure if check.failure_info else None
                title = failure.title if failure is not None else check.name
                key = (check.name, operation, title)
                message = (failure.message if failure is not None else "")[:MESSAGE_CHARS]
                # Method, path and status only: the request's headers carry the virtual key.
                example = f"{request.method} {_path_qs(request.uri)} -> {status}"
                entry = self.failures.setdefault(
                    key,
                    {
                        "check": check.name,
                        "operation": operation,
                        "title": title,
                        "message": message,
                        "example": example,
                        "count": 0,
                    },
                )
                entry["count"] += 1

    def as_dict(self) -> dict[str, Any]:
        return vars(self) | {
            "statuses": dict(sorted(self.statuses.items())),
            "by_operation": dict(sorted(self.by_operation.items())),
            "failures": sorted(self.failures.values(), key=lambda f: (f["check"], f["operation"])),
        }


def _path_qs(uri: str) -> str:
    return urlsplit(uri)._replace(scheme="", netloc="").geturl()


def round_config(
    seed: int, key: str, examples: int = EXAMPLES_PER_ROUND, *, fuzz_credentials: bool = False
) -> schemathesis.Config:
    """One round: every request carries the virtual key, or (``fuzz_credentials``) schemathesis
    generates the Authorization header itself, so the authentication path is fuzzed too."""
    settings: dict[str, Any] = {
        "seed": seed,
        "generation": {"max-examples": examples, "with-security-parameters": fuzz_credentials},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECK_NAMES}},
    }
    if not fuzz_credentials:
        settings["headers"] = {"Authorization": f"Bearer {key}"}
    return schemathesis.Config.from_dict(settings)


def fuzz(
    base_url: str,
    key: str,
    *,
    target: int,
    seed: int,
    examples: int = EXAMPLES_PER_ROUND,
    log: Callable[[str], None] = print,
) -> Tally:
    """Run rounds until ``target`` requests have been sent; returns the tally.

    Every other round fuzzes the credentials instead of sending the key.
    """
    tally = Tally()
    while tally.requests < target:
        fuzz_credentials = tally.rounds % 2 == 1
        config = round_config(seed + tally.rounds, key, examples, fuzz_credentials=fuzz_credentials)
        schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=config)
        add_extreme_numbers(schema)
        for event in from_schema(schema).execute():
            if isinstance(event, events.ScenarioFinished):
                tally.add(event.recorder)
            elif isinstance(event, (events.NonFatalError, events.FatalError)):
                tally.engine_errors.append(str(getattr(event, "info", event))[:MESSAGE_CHARS])
        tally.rounds += 1
        kind = "generated credentials" if fuzz_credentials else "the virtual key"
        log(
            f"round {tally.rounds} (seed {seed + tally.rounds - 1}, {kind}): "
            f"{tally.requests} requests, "
            f"{tally.server_errors} 5xx, {tally.nonconforming} not conforming"
        )
        if tally.engine_errors:
            break  # the run itself broke; more rounds would only repeat it
    return tally


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
            tally = fuzz(stack.web_url, stack.key, target=args.requests, seed=args.seed, log=log)
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
