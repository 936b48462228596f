"""Fuzz a running gateway through its served document until enough requests have been sent.

Each round is one schemathesis engine run (examples, coverage, fuzzing and stateful phases) over
every operation of ``/openapi.json``, with its own seed; half the JSON bodies it generates carry
numbers past every bound (fuzz/numbers.py). Rounds repeat until the requests sent reach the
target. Every other round lets schemathesis generate the credentials instead of sending the
virtual key. Every request and response is tallied as it comes back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
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
        for case_id, interaction in recorder.interactions.items():
            response = interaction.response
            status = str(response.status_code) if response is not None else "no response"
            self.requests += 1
            self.statuses[status] += 1
            self.by_operation[recorder.label] += 1
            if response is not None and response.status_code >= 500:
                self.server_errors += 1
            failed = [
                check
                for check in recorder.checks.get(case_id, [])
                if check.status == Status.FAILURE and check.name in CHECK_NAMES
            ]
            if any(check.name in CONFORMANCE_CHECKS for check in failed):
                self.nonconforming += 1
            for check in failed:
                self._remember(recorder.label, check, interaction, status)

    def _remember(self, operation: str, check: Any, interaction: Any, status: str) -> None:
        failure = check.failure_info.failure if check.failure_info else None
        title = failure.title if failure is not None else check.name
        entry = self.failures.setdefault(
            (check.name, operation, title),
            {
                "check": check.name,
                "operation": operation,
                "title": title,
                "message": (failure.message if failure is not None else "")[:MESSAGE_CHARS],
                # Method, path and status only: the request's headers carry the virtual key.
                "example": f"{interaction.request.method} {_path(interaction.request.uri)} "
                f"-> {status}",
                "count": 0,
            },
        )
        entry["count"] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "rounds": self.rounds,
            "statuses": dict(sorted(self.statuses.items())),
            "by_operation": dict(sorted(self.by_operation.items())),
            "server_errors": self.server_errors,
            "nonconforming": self.nonconforming,
            "failures": sorted(self.failures.values(), key=lambda f: (f["check"], f["operation"])),
            "engine_errors": self.engine_errors,
        }


def _path(uri: str) -> str:
    parts = urlsplit(uri)
    return parts.path + (f"?{parts.query}" if parts.query else "")


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
