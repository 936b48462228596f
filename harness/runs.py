"""What the benchmark, the drill and the fuzzing run do alike: log, pick scenarios, run each one
whatever the others did, and write the figures as a Markdown report beside their raw JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Log = Callable[[str], None]


def logger() -> Log:
    """Prints each line with the seconds since the run started."""
    started = time.monotonic()
    return lambda message: print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser described by the first paragraph of a runner's docstring."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)


def arguments(
    doc: str | None, argv: list[str] | None, scenarios: Iterable[str], flag: str, flag_help: str
) -> tuple[argparse.Namespace, list[str]]:
    """The run's options (``flag`` and ``--only``) and the scenarios ``--only`` names
    (comma-separated), in run order; all when it names none."""
    options = parser(doc)
    options.add_argument(flag, action="store_true", help=flag_help)
    options.add_argument("--only", default="", help="comma-separated scenarios (default: all)")
    args = options.parse_args(argv)
    names = list(scenarios)
    picked = [name.strip().lower() for name in args.only.split(",") if name.strip()]
    if unknown := [name for name in picked if name not in names]:
        options.error(f"unknown scenarios: {', '.join(unknown)} (there are {', '.join(names)})")
    return args, [name for name in names if not picked or name in picked]


def run_each(
    names: list[str], scenario: Callable[[str], dict[str, Any]], log: Log
) -> dict[str, Any]:
    """``scenario(name)`` for each name; one that raises is recorded as its error."""
    results: dict[str, Any] = {}
    for name in names:
        started = time.monotonic()
        try:
            results[name] = scenario(name)
        except Exception as exc:
            log(f"{name} raised {exc!r}")
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        results[name]["scenario_seconds"] = round(time.monotonic() - started, 1)
        log(f"{name} done in {results[name]['scenario_seconds']} s")
    return results


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if "model name" in line), "")
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
    }


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def loads(averages: Sequence[float] | None) -> str:
    """Load averages as ``1.50/1.25/1.00``."""
    return "/".join(f"{value:.2f}" for value in averages) if averages else "?"


def facts(results: dict[str, Any], command: str) -> str:
    """The lines every report starts with: when, on what, by which command."""
    info, end = results.get("machine", {}), results.get("load_average_at_end")
    at_end = f", at the end {loads(end)}" if end else ""
    return (
        f"- Date: {results.get('finished_at') or now()}\n"
        f"- Machine: {info.get('cpus')} CPUs ({info.get('cpu_model')}), Python "
        f"{info.get('python')}, load average (1, 5, 15 min) at start "
        f"{loads(info.get('load_average_at_start'))}{at_end}\n"
        f"- Command: `{command}`"
    )


def cell(value: object) -> str:
    """A table cell: one line, no column separator."""
    return " ".join(str(value).split()).replace("|", "/")


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def counts(by_name: dict[str, Any]) -> str:
    """``{"503": 259}`` as ``503: 259``; an empty dict as ``0``."""
    return ", ".join(f"{name}: {n:,}" for name, n in by_name.items()) or "0"


def write(markdown: Path, raw: Path, title: str, results: dict[str, Any], *parts: str) -> Path:
    """``# title`` and ``parts`` to ``markdown``, ``results`` as JSON to ``raw``."""
    markdown.write_text("\n\n".join([f"# {title}", *parts]) + "\n")
    raw.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return markdown
