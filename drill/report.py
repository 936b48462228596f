"""The drill's table, for the terminal and for ``RELIABILITY.md``; raw JSON beside it in
``drill/results.json``. Below the table, each scenario's own figures, by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from drill.ledger import Ledger
from drill.observe import DRILL_SETTINGS
from harness import runs

REPO = Path(__file__).resolve().parent.parent
REPORT = REPO / "RELIABILITY.md"
RAW = Path(__file__).resolve().parent / "results.json"

COLUMNS = (
    "#",
    "scenario",
    "submitted",
    "accepted (202)",
    "completed",
    "failed (by code)",
    "lost",
    "duplicated",
    "charged twice",
    "unanswered",
    "refused (by status)",
    "own condition",
    "result",
)
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
carries a cost (every completed job must carry one; the drill's model is priced).
**unanswered**: no HTTP answer at all (not counted as accepted). **refused**: any answer but
202."""


def _charged(data: dict[str, Any]) -> str:
    """Charges beyond one per charged job; and completed jobs never charged, if any."""
    uncharged = data.get("completed_uncharged", 0)
    twice = str(data.get("charged_twice", "-"))
    return f"{twice} ({uncharged:,} completed uncharged)" if uncharged else twice


def row(number: str, title: str, data: dict[str, Any] | None) -> list[str]:
    """One table row; a scenario that was not run or raised says so."""
    if data is None:
        return [number, title, *["-"] * 10, "not run"]
    if "error" in data:
        return [number, title, *["-"] * 9, f"error: {data['error']}", "FAILED"]
    return [
        number,
        title,
        f"{data['submitted']:,}",
        f"{data['accepted']:,}",
        f"{data['completed']:,}",
        runs.counts(data["failed"]),
        str(data["lost"]),
        str(data["duplicated"]),
        _charged(data),
        f"{data['unanswered']:,}",
        runs.counts(data["refused"]),
        f"{data['extra_condition']}: {'yes' if data['extra_ok'] else 'NO'}",
        "passed" if data["passed"] else "FAILED",
    ]


def table(results: dict[str, Any], titles: dict[str, str]) -> str:
    scenarios = results["scenarios"]
    return runs.table(COLUMNS, [row(n, title, scenarios.get(n)) for n, title in titles.items()])


def figure(value: Any) -> str:
    """A figure as it reads in a sentence: numbers with thousands separators, maps as pairs."""
    if isinstance(value, dict):
        return "(" + ", ".join(f"{k}: {figure(v)}" for k, v in value.items()) + ")"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(figure(v) for v in value) + "]"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "none" if value is None else str(value)


def details(number: str, data: dict[str, Any]) -> str:
    """A scenario's own figures (what the table has no column for) and its failed checks."""
    own = [(k, v) for k, v in data.items() if k not in NOT_DETAILED]
    text = "; ".join(f"{name.replace('_', ' ')}: {figure(value)}" for name, value in own)
    failed = [name.replace("_", " ") for name, ok in data.get("checks", {}).items() if not ok]
    return f"- {number}: {text or 'no further figures'}." + (
        f" Failed checks: {', '.join(failed)}." if failed else ""
    )


def render(results: dict[str, Any], titles: dict[str, str]) -> str:
    scenarios = results["scenarios"]
    shortened = ", ".join(f"`{k}={v}`" for k, v in DRILL_SETTINGS.items())
    facts = runs.facts(results, results["command"]) + f" ({results['seconds']:.0f} s)\n"
    facts += f"- Shortened for the drill: {shortened}; beat re-queues lapsed jobs every 15 s."
    errors = "; ".join(
        f"{n}: {runs.counts(data['postgres_errors']) if data.get('postgres_errors') else 'none'}"
        for n, data in scenarios.items()
    )
    lines = [details(n, data) for n, data in scenarios.items() if "error" not in data]
    lines.append(f"- ERROR lines in the drill's Postgres log, by scenario: {errors}.")
    return "\n\n".join([INTRO, facts, table(results, titles), LEGEND, "\n".join(lines)])


def write(results: dict[str, Any], titles: dict[str, str]) -> Path:
    results["finished_at"] = runs.now()
    return runs.write(REPORT, RAW, "Reliability drill", results, render(results, titles))
