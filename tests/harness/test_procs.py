"""The launcher: process groups, logs, HTTP readiness and memory over process trees."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from harness.procs import (
    Procs,
    descendants,
    free_port,
    group_members,
    tree_rss_bytes,
)

SLEEPER = [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"]
# A shell whose child ignores SIGTERM: stopping the shell alone would leave the child behind.
STUBBORN_CHILD = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


def wait_for_line(log: Path, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text():
            return
        time.sleep(0.02)
    raise AssertionError(f"{text!r} never appeared in {log}")


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_start_logs_output_and_stop_ends_the_process(tmp_path: Path) -> None:
    with Procs(tmp_path) as procs:
        proc = procs.start("sleeper", SLEEPER)
        wait_for_line(tmp_path / "sleeper.log", "ready")
        assert procs.alive("sleeper")
        assert procs.pids("sleep") == [proc.pid]
        assert procs.pids("other") == []

        procs.stop("sleeper")

        assert not procs.alive("sleeper")
        assert proc.poll() is not None
        assert procs.pids("") == []


def test_a_given_environment_is_the_whole_environment(tmp_path: Path) -> None:
    script = "import os; print(os.environ.get('HARNESS_TEST'), 'HOME' in os.environ, flush=True)"
    with Procs(tmp_path) as procs:
        procs.start("given", [sys.executable, "-c", script], env={"HARNESS_TEST": "x"}).wait(10)
        procs.start("ours", [sys.executable, "-c", script]).wait(10)
    assert (tmp_path / "given.log").read_text().strip() == "x False"
    assert (tmp_path / "ours.log").read_text().strip() == f"None {'HOME' in os.environ}"


def test_stop_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    shell = f'{sys.executable} -c "{STUBBORN_CHILD}" & wait'
    with Procs(tmp_path) as procs:
        proc = procs.start("group", ["sh", "-c", shell])
        wait_for_line(tmp_path / "group.log", "ready")
        child = next(pid for pid in descendants([proc.pid]) if pid != proc.pid)

        started = time.monotonic()
        procs.stop("group", timeout=0.5)

        assert time.monotonic() - started >= 0.5  # SIGTERM was not enough
        assert group_members(proc.pid) == []
        assert descendants([child]) == set()  # the stubborn child is gone too


def test_exit_stops_every_process_in_reverse_order(tmp_path: Path) -> None:
    with Procs(tmp_path) as procs:
        first = procs.start("a", SLEEPER)
        second = procs.start("b", SLEEPER)
    assert first.poll() is not None
    assert second.poll() is not None


def test_an_exception_inside_the_context_still_stops_processes(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), Procs(tmp_path) as procs:
        proc = procs.start("a", SLEEPER)
        raise KeyboardInterrupt
    assert proc.poll() is not None


def test_starting_a_running_name_twice_is_refused(tmp_path: Path) -> None:
    with Procs(tmp_path) as procs:
        procs.start("a", SLEEPER)
        with pytest.raises(ValueError, match="already running"):
            procs.start("a", SLEEPER)


def test_wait_http_returns_once_the_server_answers(tmp_path: Path) -> None:
    port = free_port()
    server = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    with Procs(tmp_path) as procs:
        procs.start("http", server, cwd=tmp_path)
        procs.wait_http("http", f"http://127.0.0.1:{port}/", timeout=10)


def test_wait_http_names_the_url_and_the_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("booting\nTraceback: address in use\n")
    url = f"http://127.0.0.1:{free_port()}/health"
    with pytest.raises(RuntimeError, match="address in use") as raised:
        Procs(tmp_path).wait_http("server", url, timeout=0.3)
    assert url in str(raised.value)


def test_wait_http_fails_at_once_when_the_process_died(tmp_path: Path) -> None:
    with Procs(tmp_path) as procs:
        proc = procs.start("dies", [sys.executable, "-c", "raise SystemExit(3)"])
        proc.wait(timeout=10)
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="exited with 3"):
            procs.wait_http("dies", f"http://127.0.0.1:{free_port()}/", timeout=30)
        assert time.monotonic() - started < 5


def test_tree_rss_includes_descendants(tmp_path: Path) -> None:
    shell = f'{SLEEPER[0]} -c "{SLEEPER[2]}" & wait'
    with Procs(tmp_path) as procs:
        proc = procs.start("tree", ["sh", "-c", shell])
        wait_for_line(tmp_path / "tree.log", "ready")
        assert tree_rss_bytes([proc.pid]) > 5 * 1024 * 1024  # the Python child dominates
        assert tree_rss_bytes([]) == 0


def test_a_process_that_exited_is_named_with_its_logs_tail(tmp_path: Path) -> None:
    with Procs(tmp_path) as procs:
        procs.start("up", SLEEPER)
        script = "print('boot failed: no database', flush=True); raise SystemExit(4)"
        procs.start("dies", [sys.executable, "-c", script]).wait(timeout=10)
        procs.check_alive("up")
        with pytest.raises(RuntimeError, match=r"(?s)dies exited with 4.*boot failed: no database"):
            procs.check_alive("up", "dies")


def test_wait_for_line_returns_once_the_log_has_it_and_fails_when_the_process_exits(
    tmp_path: Path,
) -> None:
    with Procs(tmp_path) as procs:
        procs.start("sleeper", SLEEPER)
        procs.wait_for_line("sleeper", r"^ready$", timeout=10)
        procs.start("quits", [sys.executable, "-c", "pass"])
        with pytest.raises(RuntimeError, match="quits exited with 0"):
            procs.wait_for_line("quits", r"never printed", timeout=10)
