"""The one launcher: child processes by name, each in its own process group, logging to a file.

Stopping a process stops its whole group (granian's and Celery's forked workers too): SIGTERM,
then SIGKILL for what is left after a timeout. Memory is measured over whole process trees for
the same reason.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request_json(url: str, body: bytes | None = None, headers: Mapping[str, str] = {}) -> Any:
    """One request to a server of ours (a POST when there is a body); its JSON answer."""
    request = urllib.request.Request(url, body, dict(headers))  # noqa: S310 - loopback
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.loads(response.read())


def log_tail(log: Path | None, lines: int = 40) -> str:
    """The last lines of a log file, or an empty string when there is none."""
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# --- /proc --------------------------------------------------------------------------------------
def _live_stats() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgrp) of every process but zombies, which an init that does not reap may
    leave behind, holding nothing."""
    stats: dict[int, tuple[int, int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            raw = Path(f"/proc/{entry}/stat").read_text()
            # The command name is in parentheses and may itself contain spaces or parentheses.
            fields = raw[raw.rfind(")") + 2 :].split()
            if fields and fields[0] not in ("Z", "X"):
                stats[int(entry)] = (int(fields[1]), int(fields[2]))
    return stats


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group."""
    return [pid for pid, (_, pgrp) in _live_stats().items() if pgrp == pgid]


def descendants(pids: Iterable[int]) -> set[int]:
    """The given live pids and all their live descendants."""
    stats = _live_stats()
    found: set[int] = set()
    todo = [pid for pid in pids if pid in stats]
    while todo:
        found.add(pid := todo.pop())
        todo += [child for child, (ppid, _) in stats.items() if ppid == pid and child not in found]
    return found


def tree_rss_bytes(pids: Iterable[int]) -> int:
    """Resident memory of these processes and all their descendants, in bytes."""
    total = 0
    for pid in descendants(pids):
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text()
            match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)  # none for kernel threads
            total += int(match.group(1)) * 1024 if match else 0
    return total


def http_status(url: str) -> int | str:
    """The status a GET of ``url`` answers (no proxy in between), or why there is none."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=5)
    try:
        conn.request("GET", f"{parts.path or '/'}{'?' + parts.query if parts.query else ''}")
        return conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


# --- process groups -----------------------------------------------------------------------------
def _stop_group(proc: subprocess.Popen[Any], sig: signal.Signals, timeout: float) -> bool:
    """Whether the group's leader was reaped and no member is left ``timeout`` after ``sig``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    deadline = time.monotonic() + timeout
    while proc.poll() is None or group_members(proc.pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


class Procs:
    """Child processes by name, output in ``log_dir/<name>.log``; stops them all on exit, error
    or Ctrl-C (``atexit`` too, and SIGTERM becomes SystemExit while the context is open)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._previous_sigterm: Any = None
        atexit.register(self.stop_all)

    def __enter__(self) -> Procs:
        if threading.current_thread() is threading.main_thread():
            # SIGTERM ends the run as an exception would, so every process is stopped.
            self._previous_sigterm = signal.signal(signal.SIGTERM, lambda n, _: sys.exit(128 + n))
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop_all()
        finally:
            if self._previous_sigterm is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
                self._previous_sigterm = None
            atexit.unregister(self.stop_all)

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Starts ``argv`` as ``name``; ``env`` is its whole environment (None: ours)."""
        if self.alive(name):
            raise ValueError(f"a process named {name!r} is already running")
        with self.log_path(name).open("ab") as log:  # the child writes to a copy of its own
            self._procs[name] = subprocess.Popen(  # noqa: S603 - the tools' own commands
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ if env is None else env),
                cwd=cwd,
                start_new_session=True,
            )
        return self._procs[name]

    def stop(self, name: str, timeout: float = 15.0) -> int | None:
        """SIGTERM to the group, SIGKILL what is left after ``timeout``; the leader's exit code."""
        if (proc := self._procs.pop(name, None)) is None:
            return None
        if not _stop_group(proc, signal.SIGTERM, timeout):
            _stop_group(proc, signal.SIGKILL, 5.0)
        return proc.returncode

    def stop_all(self) -> None:
        for name in reversed(list(self._procs)):
            self.stop(name)

    def pids(self, prefix: str = "") -> list[int]:
        """Pids of the running processes whose name starts with ``prefix``."""
        return [p.pid for n, p in self._procs.items() if n.startswith(prefix) and p.poll() is None]

    def alive(self, name: str) -> bool:
        return name in self._procs and self._procs[name].poll() is None

    def check_alive(self, *names: str) -> None:
        """RuntimeError, with its log's tail, for the first of ``names`` that has exited."""
        for name in names:
            if (proc := self._procs.get(name)) is not None and proc.poll() is not None:
                log = self.log_path(name)
                raise RuntimeError(
                    f"{name} exited with {proc.returncode}; log {log}:\n{log_tail(log)}"
                )

    def wait_until(
        self, name: str, ready: Callable[[], bool], what: str, timeout: float = 60.0
    ) -> None:
        """Until ``ready()``; RuntimeError with ``name``'s log if it exits or time runs out."""
        deadline = time.monotonic() + timeout
        while not ready():
            self.check_alive(name)
            if time.monotonic() > deadline:
                log = self.log_path(name)
                raise RuntimeError(f"{name}: no {what} in {timeout:g} s; {log}:\n{log_tail(log)}")
            time.sleep(0.1)

    def wait_http(self, name: str, url: str, timeout: float = 60.0) -> None:
        """Until ``url``, served by ``name``, answers 200."""
        self.wait_until(name, lambda: http_status(url) == 200, f"200 from {url}", timeout)

    def wait_for_line(self, name: str, pattern: str, timeout: float = 60.0) -> None:
        log = self.log_path(name)
        found = lambda: re.search(pattern, log.read_text(errors="replace")) is not None  # noqa: E731
        self.wait_until(name, found, repr(pattern), timeout)
