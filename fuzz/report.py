"""The fuzzing run's figures, for the terminal, ``fuzz/RESULTS.md`` and ``fuzz/results.json``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FUZZ_DIR = Path(__file__).resolve().parent


def table(results: dict[str, Any]) -> str:
    """The figures as Markdown tables."""
    lines = [
        "| figure | value |",
        "|---|---|",
        f"| requests sent | {results['requests']} |",
        f"| rounds (one seed each) | {results['rounds']} |",
        f"| responses 5xx | {results['server_errors']} |",
        f"| responses that do not conform to the document | {results['nonconforming']} |",
        f"| distinct failures | {len(results['failures'])} |",
        "",
        "| status | responses |",
        "|---|---|",
        *(f"| {status} | {count} |" for status, count in results["statuses"].items()),
        "",
        "| operation | requests |",
        "|---|---|",
        *(f"| {operation} | {count} |" for operation, count in results["by_operation"].items()),
    ]
    if results["failures"]:
        lines += ["", "| check | operation | failure | times | example |", "|---|---|---|---|---|"]
        lines += [
            f"| {f['check']} | {f['operation']} | {_cell(f['title'])}: {_cell(f['message'])} "
            f"| {f['count']} | `{_cell(f['example'])}` |"
            for f in results["failures"]
        ]
    if results["engine_errors"]:
        lines += ["", "Errors of the fuzzing run itself:", ""]
        lines += [f"- {_cell(error)}" for error in results["engine_errors"]]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def write(results: dict[str, Any], command: str) -> Path:
    """Write RESULTS.md and results.json beside this module; returns the Markdown file's path."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    results = {"date": stamp, "command": command, **results}
    markdown = FUZZ_DIR / "RESULTS.md"
    markdown.write_text(
        "# Fuzzing results\n\n"
        f"Run on {stamp} with `{command}`: schemathesis against the gateway's served "
        "`/openapi.json`, a real web process (granian) on 127.0.0.1, a scratch SQLite database. "
        "Checks on every response: not a 5xx; status code, content type and body as the "
        "document declares.\n\n" + table(results) + "\n"
    )
    (FUZZ_DIR / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return markdown
