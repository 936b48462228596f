"""Process management for the benchmark: start servers, wait for them, measure and stop them.

Every process the benchmark starts gets its own process group, so stopping it also stops the
workers it forked (uvicorn and gunicorn workers, Celery pool children). Memory is measured over
whole process trees for the same reason.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
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

LOG_TAIL_LINES = 40
POLL_SECONDS = 0.05


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_manage(python: str, repo: Path, env: Mapping[str, str], *args: str) -> str:
    """Run ``manage.py args`` in ``repo`` with ``env`` added to ours; returns its stdout.

    Raises RuntimeError with the tail of its stderr when it fails.
    """
    done = subprocess.run(  # noqa: S603 - our own fixed command
        [python, "manage.py", *args],
        cwd=repo,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {args[0]} failed: {done.stderr[-2000:]}")
    return done.stdout


# --- /proc --------------------------------------------------------------------------------------
def _read_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgrp) of a process, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2])


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _live_stats() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgrp) of every process that is not a zombie."""
    stats: dict[int, tuple[int, int]] = {}
    for pid in _all_pids():
        stat = _read_stat(pid)
        if stat is not None and stat[0] not in ("Z", "X"):
            stats[pid] = (stat[1], stat[2])
    return stats


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group.

    Zombies are left out: an orphan's zombie may linger when the container's init does not reap,
    and it holds no resources.
    """
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
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # reported in kB
    return 0  # kernel threads and zombies have no VmRSS line


def tree_rss_bytes(pids: list[int]) -> int:
    """Resident memory of these processes and all their descendants, in bytes."""
    return sum(_rss_bytes(pid) for pid in descendants(pids))


class RssSampler:
    """Samples the tree RSS of ``pids_fn()`` in a thread and keeps the peak.

    ``pids_fn`` is called on each sample, so processes started after ``start()`` are included.
    """

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
        """Stops sampling and returns the peak in bytes."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._sample()
        return self.peak

    def _sample(self) -> None:
        self.peak = max(self.peak, tree_rss_bytes(self._pids_fn()))

    def _loop(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self._interval):
                return


# --- waiting for servers ------------------------------------------------------------------------
def _status_of(url: str, timeout: float) -> int:
    """HTTP status of a GET; raises OSError (or http.client errors) when nothing answers."""
    parts = urlsplit(url)
    conn_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    conn = conn_class(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        path = parts.path or "/"
        conn.request("GET", f"{path}?{parts.query}" if parts.query else path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def log_tail(log: Path | None, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log file, or an empty string when there is none."""
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def wait_http(
    url: str,
    timeout: float = 60.0,
    ok: tuple[int, ...] = (200,),
    log: Path | None = None,
    proc: subprocess.Popen[Any] | None = None,
) -> None:
    """Polls ``url`` with GET until it answers one of the ``ok`` statuses.

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
            if status in ok:
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
        time.sleep(POLL_SECONDS)


class Procs:
    """The benchmark's child processes, by name; stops them all on exit, error or Ctrl-C.

    Each process runs in a new session (its own process group) with stdout and stderr in
    ``log_dir/<name>.log``. Use as a context manager; ``stop_all`` is also registered with
    ``atexit``, and SIGTERM to the benchmark becomes SystemExit while the context is open so the
    cleanup still runs.
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._procs: dict[str, subprocess.Popen[Any]] = {}
        self._logs: dict[str, IO[bytes]] = {}
        self._previous_sigterm: Any = None
        atexit.register(self.stop_all)

    # --- context manager ------------------------------------------------------------------------
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

    # --- processes ------------------------------------------------------------------------------
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
        """Starts ``argv`` as ``name`` in a new process group; ``env`` overrides os.environ."""
        if self.alive(name):
            raise ValueError(f"a process named {name!r} is already running")
        self._forget(name)
        log = self.log_path(name).open("ab")
        try:
            proc = subprocess.Popen(  # noqa: S603  the benchmark's own commands
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
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

    def _forget(self, name: str) -> None:
        self._procs.pop(name, None)
        log = self._logs.pop(name, None)
        if log is not None:
            log.close()


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
