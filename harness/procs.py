"""The one launcher: child processes by name, each in its own process group, logging to a file.

Stopping a process stops its whole group (granian's and Celery's forked workers too): SIGTERM,
then SIGKILL for what is left after a timeout. Memory is measured over whole process trees for
the same reason.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any
from urllib.parse import urlsplit


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(log: Path | None, lines: int = 40) -> str:
    """The last lines of a log file, or an empty string when there is none."""
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# --- /proc --------------------------------------------------------------------------------------
def _live_stats() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgrp) of every process that is not a zombie.

    Zombies are left out: an orphan's zombie may linger when the container's init does not reap,
    and it holds no resources.
    """
    stats: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        try:
            raw = Path(f"/proc/{entry}/stat").read_text() if entry.isdigit() else ""
        except OSError:
            continue
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
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = [pid for pid in pids if pid in stats]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def _rss_bytes(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)  # none for zombies, kernel threads
    return int(match.group(1)) * 1024 if match else 0


def tree_rss_bytes(pids: Iterable[int]) -> int:
    """Resident memory of these processes and all their descendants, in bytes."""
    return sum(_rss_bytes(pid) for pid in descendants(pids))


class RssSampler:
    """Samples the tree RSS of ``pids_fn()`` in a thread and keeps the peak; ``pids_fn`` is
    called on each sample, so processes started after ``start()`` count."""

    def __init__(self, pids_fn: Callable[[], list[int]], interval: float = 0.2) -> None:
        self._pids_fn = pids_fn
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self.peak = 0

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stops sampling; returns the peak in bytes."""
        self._stop.set()
        self._thread.join()
        return self.peak

    def _loop(self) -> None:
        while True:
            self.peak = max(self.peak, tree_rss_bytes(self._pids_fn()))
            if self._stop.wait(self._interval):
                return


# --- waiting for servers ------------------------------------------------------------------------
def _status_of(url: str, timeout: float) -> int:
    """HTTP status of a GET, with no proxy in between; raises OSError when nothing answers."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("GET", f"{parts.path or '/'}{'?' + parts.query if parts.query else ''}")
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def wait_http(
    url: str,
    timeout: float = 60.0,
    log: Path | None = None,
    proc: subprocess.Popen[Any] | None = None,
) -> None:
    """Polls ``url`` until it answers 200.

    Raises RuntimeError naming the url, the last outcome and the tail of ``log`` when the
    deadline passes, or at once when ``proc`` (the server's process) has exited.
    """
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while True:
        try:
            status = _status_of(url, timeout=min(5.0, max(0.1, deadline - time.monotonic())))
        except (OSError, http.client.HTTPException) as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if status == 200:
                return
            last = f"HTTP {status}"
        exited = proc is not None and proc.poll() is not None
        if exited or time.monotonic() >= deadline:
            why = f"exited with {proc.returncode}" if exited and proc else f"timed out ({last})"
            tail = log_tail(log)
            raise RuntimeError(
                f"{url} did not answer: {why}" + (f"\n{log}:\n{tail}" if tail else "")
            )
        time.sleep(0.1)


# --- process groups -----------------------------------------------------------------------------
def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _wait_group(proc: subprocess.Popen[Any], deadline: float) -> bool:
    """Waits until the leader is reaped and no live process is left in its group."""
    while True:
        proc.poll()
        if proc.returncode is not None and not group_members(proc.pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


class Procs:
    """Child processes by name; stops them all on exit, error or Ctrl-C.

    Each runs in a new session (its own process group) with stdout and stderr in
    ``log_dir/<name>.log``. Use as a context manager; ``stop_all`` is also registered with
    ``atexit``, and SIGTERM becomes SystemExit while the context is open so the cleanup runs.
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._procs: dict[str, subprocess.Popen[Any]] = {}
        self._logs: dict[str, IO[bytes]] = {}
        self._previous_sigterm: Any = None
        atexit.register(self.stop_all)

    def __enter__(self) -> Procs:
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop_all()
        finally:
            if self._previous_sigterm is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
                self._previous_sigterm = None
            atexit.unregister(self.stop_all)

    def log_path(self, name: str) -> Path:
        """Where the output of process ``name`` goes."""
        return self.log_dir / f"{name}.log"

    def start(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> subprocess.Popen[Any]:
        """Starts ``argv`` as ``name`` in a new process group; ``env`` is its whole environment
        (None: ours)."""
        if self.alive(name):
            raise ValueError(f"a process named {name!r} is already running")
        self._forget(name)
        log = self.log_path(name).open("ab")
        try:
            proc = subprocess.Popen(  # noqa: S603 - the tools' own commands
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ if env is None else env),
                cwd=cwd,
                start_new_session=True,
            )
        except BaseException:
            log.close()
            raise
        self._procs[name] = proc
        self._logs[name] = log
        return proc

    def stop(self, name: str, timeout: float = 15.0) -> int | None:
        """SIGTERM to the process group, then SIGKILL what is left after ``timeout`` seconds.

        Returns the leader's exit code (None for an unknown name).
        """
        proc = self._procs.get(name)
        if proc is None:
            return None
        try:
            _signal_group(proc.pid, signal.SIGTERM)
            if not _wait_group(proc, time.monotonic() + timeout):
                _signal_group(proc.pid, signal.SIGKILL)
                _wait_group(proc, time.monotonic() + 5.0)
        finally:
            self._forget(name)
        return proc.returncode

    def stop_all(self) -> None:
        """Stops every process, the last started first."""
        for name in reversed(list(self._procs)):
            self.stop(name)

    def pids(self, prefix: str = "") -> list[int]:
        """Pids of the running processes whose name starts with ``prefix``."""
        return [
            proc.pid
            for name, proc in self._procs.items()
            if name.startswith(prefix) and proc.poll() is None
        ]

    def alive(self, name: str) -> bool:
        """Whether the process started as ``name`` is still running."""
        proc = self._procs.get(name)
        return proc is not None and proc.poll() is None

    def check_alive(self, *names: str) -> None:
        """Raises RuntimeError, with its log's tail, for the first of ``names`` that has exited."""
        for name in names:
            proc = self._procs.get(name)
            if proc is not None and proc.poll() is not None:
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

    def wait_for_line(self, name: str, pattern: str, timeout: float = 60.0) -> None:
        """Until ``name``'s log has a line matching ``pattern``."""
        log = self.log_path(name)
        found = lambda: re.search(pattern, log.read_text(errors="replace")) is not None  # noqa: E731
        self.wait_until(name, found, repr(pattern), timeout)

    def _forget(self, name: str) -> None:
        self._procs.pop(name, None)
        log = self._logs.pop(name, None)
        if log is not None:
            log.close()


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
