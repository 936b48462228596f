"""What the gateway's processes said in their logs, read from a point a scenario marked.

The process logs in ``.drill/logs/`` grow over the whole run, and an earlier scenario's outage
leaves the same lines; a ``LogWindow`` reads only what was written after it was opened.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ENGINE_STARTED = re.compile(r"job engine (\S+) started")
# Celery's consumer, each time it fails to reach the broker (an ERROR line, at any log level).
BROKER_REFUSED = re.compile(r"consumer: Cannot connect to redis://")
# Celery's INFO line once its consumer is connected: "<queue>-<n>@<host> ready."
WORKER_READY = re.compile(r"@\S+ ready\.")
# The web process, when a bell for a committed job could not be published.
BELLS_NOT_RUNG = re.compile(r"broker unavailable, \d+ bells not rung")


@dataclass(frozen=True)
class WorkerSaid:
    """What a Celery worker's log says about its engine and its broker."""

    engines: tuple[str, ...]  # ids of the job engines it started, in order
    broker_refused: int  # lines saying the broker could not be reached
    ready: int  # lines saying the worker is consuming from the broker

    @classmethod
    def read(cls, text: str) -> WorkerSaid:
        return cls(
            engines=tuple(ENGINE_STARTED.findall(text)),
            broker_refused=len(BROKER_REFUSED.findall(text)),
            ready=len(WORKER_READY.findall(text)),
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "engines_started": len(self.engines),
            "broker_refused_lines": self.broker_refused,
            "ready_lines": self.ready,
        }


def bells_not_rung(text: str) -> int:
    """Lines of a web log saying the broker was unavailable for a job's bell."""
    return len(BELLS_NOT_RUNG.findall(text))


@dataclass(frozen=True)
class LogWindow:
    """A log file from the size it had when the window was opened on."""

    path: Path
    start: int

    @classmethod
    def from_now(cls, path: Path) -> LogWindow:
        return cls(path, path.stat().st_size if path.exists() else 0)

    def text(self) -> str:
        if not self.path.exists():
            return ""
        with self.path.open("rb") as log:
            log.seek(self.start)
            return log.read().decode(errors="replace")
