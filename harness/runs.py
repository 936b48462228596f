"""What the benchmark, the drill and the fuzzing run do alike: log, pick scenarios, run each one
whatever the others did, and write the figures as Markdown beside their raw JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

Log = Callable[[str], None]


def logger() -> Log:
    """Prints each line with the seconds since the run started."""
    started = time.monotonic()
    return lambda message: print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)


def arguments(
    doc: str | None, argv: list[str] | None, scenarios: Iterable[str], flag: str, flag_help: str
) -> tuple[argparse.Namespace, list[str]]:
    """The run's options (``flag`` and ``--only``) and the scenarios ``--only`` names
    (comma-separated), in run order; all when it names none."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    parser.add_argument(flag, action="store_true", help=flag_help)
    parser.add_argument("--only", default="", help="comma-separated scenarios (default: all)")
    args = parser.parse_args(argv)
    names = list(scenarios)
    picked = [name.strip().lower() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in picked if name not in names]
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)} (there are {', '.join(names)})")
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
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
    }


def write(markdown: Path, text: str, raw: Path, results: dict[str, Any]) -> None:
    markdown.write_text(text)
    raw.write_text(json.dumps(results, indent=2, default=str) + "\n")
