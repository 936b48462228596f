"""Production smoke test: install and start the gateway the way README.md tells a user to.

Two scenarios, each in a virtualenv of its own that holds the gateway and its lock file alone
(no test tools), so a runtime dependency that only the test extras bring in shows here:

- production: the commands of README's "Production" block (install from the lock, migrate,
  granian, ``celery -A gateway worker``, ``celery -A gateway beat``) on Postgres and Redis;
- embedded: README's run command word for word (the virtualenv's path apart) on the embedded
  default, SQLite and the filesystem broker.

In each, one virtual key submits one job against a fake provider on 127.0.0.1; the job must
complete while every process is still up, then every process is stopped. The commands are read
from README.md, so the README cannot drift from what works. Run it from the test virtualenv
(it serves the fake provider): ``.venv/bin/python .ci/smoke.py``.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.procs import free_port  # noqa: E402
from harness.upstream import UPSTREAM_OPENAI_KEY, FakeUpstream, reply_text  # noqa: E402
from providers.registry import ENV_PROVIDERS  # noqa: E402

START_TIMEOUT = 120.0  # a cold start migrates and collects static files first
JOB_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
PROVIDER_PREFIXES = tuple(f"{name.upper()}_" for name in ENV_PROVIDERS)


class SmokeFailure(Exception):
    pass


# --- what README.md says -------------------------------------------------------------------------
def readme_blocks(heading: str) -> list[str]:
    """The ```sh blocks under the ``## heading`` section of README.md."""
    text = (REPO / "README.md").read_text()
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if match is None:
        raise SmokeFailure(f"README.md has no '## {heading}' section")
    return re.findall(r"```sh\n(.*?)```", match.group(1), re.S)


def shell_lines(block: str) -> list[str]:
    """A block's commands: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = (re.sub(r"(^|\s)#.*$", "", line).strip() for line in joined.splitlines())
    return [line for line in lines if line]


def run_command() -> str:
    """README's run command (the first block of "Two commands")."""
    (line,) = shell_lines(readme_blocks("Two commands")[0])
    return line


def production_commands() -> tuple[list[str], list[list[str]]]:
    """README's production block: the names it exports, and its commands as argument lists."""
    exported: list[str] = []
    commands: list[list[str]] = []
    for line in shell_lines(readme_blocks("Production")[0]):
        words = shlex.split(line)
        if words[0] == "export":
            exported += [word.split("=", 1)[0] for word in words[1:]]
        else:
            commands.append(words)
    return exported, commands


# --- processes -----------------------------------------------------------------------------------
@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(f"    {line}" for line in text)

    def require_running(self) -> None:
        if self.popen.poll() is not None:
            raise SmokeFailure(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop its whole process group; fail if it does not end in time."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
                raise SmokeFailure(f"{self.name} did not stop within {STOP_TIMEOUT:g} s") from None
        with suppress(ProcessLookupError):  # anything the group left behind
            os.killpg(self.popen.pid, signal.SIGKILL)


class Stack:
    """Processes started for one scenario, all stopped when it ends."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.processes: list[Process] = []

    def run(self, argv: list[str]) -> str:
        done = subprocess.run(
            argv, cwd=REPO, env=self.env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise SmokeFailure(f"{shlex.join(argv)} failed ({done.returncode}):\n{done.stderr}")
        return done.stdout

    def start(self, name: str, argv: list[str]) -> Process:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                argv,
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        failures = []
        for process in reversed(self.processes):
            try:
                process.stop()
            except SmokeFailure as exc:
                failures.append(str(exc))
        if failures:
            raise SmokeFailure("; ".join(failures))


def base_env(workdir: Path, upstream: FakeUpstream) -> dict[str, str]:
    """Our environment less anything that configures a gateway, plus one fake provider."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("GATEWAY_", "CELERY_", "DJANGO_", "VIRTUAL_ENV", "PYTHON"))
        and not name.startswith(PROVIDER_PREFIXES)
        and name not in {"DATABASE_URL", "SECRET_KEY", "ALLOWED_HOSTS", "HOST", "PORT"}
    }
    env.update(
        GATEWAY_VAR_DIR=str(workdir / "var"),
        OPENAI_API_KEY=UPSTREAM_OPENAI_KEY,
        OPENAI_BASE_URL=f"{upstream.base_url}/v1",
    )
    return env


def fresh_venv(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    return path


# --- one job -------------------------------------------------------------------------------------
def wait_until_healthy(base_url: str, processes: list[Process]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        for process in processes:
            process.require_running()
        with suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise SmokeFailure(f"{base_url}/health did not answer 200 in {START_TIMEOUT:g} s")
        time.sleep(0.5)


def submit_and_complete(base_url: str, raw_key: str, processes: list[Process]) -> str:
    prompt = f"smoke {secrets.token_hex(4)}"
    headers = {"Authorization": f"Bearer {raw_key}"}
    body = {"model": "openai/ok", "prompt": prompt, "max_tokens": 8}
    answer = httpx.post(f"{base_url}/v1/async/completions", json=body, headers=headers, timeout=10)
    if answer.status_code != 202:
        raise SmokeFailure(f"submit answered {answer.status_code}: {answer.text}")
    poll_url = answer.headers["Location"]
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        for process in processes:
            process.require_running()
        polled = httpx.get(poll_url, headers=headers, timeout=10)
        if polled.status_code == 200:
            job = polled.json()
            text = (job.get("result") or {}).get("choices", [{}])[0].get("text")
            if job["status"] != "completed" or text != reply_text(prompt):
                raise SmokeFailure(f"the job ended as {polled.text}")
            return str(job["id"])
        if polled.status_code != 202:
            raise SmokeFailure(f"poll answered {polled.status_code}: {polled.text}")
        if time.monotonic() > deadline:
            raise SmokeFailure(
                f"the job was still {polled.json()['status']} after {JOB_TIMEOUT:g} s"
            )
        time.sleep(0.25)


def create_key(stack: Stack, python: Path) -> str:
    output = stack.run([str(python), "manage.py", "create_virtual_key", "--name", "smoke"])
    return output.strip().splitlines()[-1]


# --- the two scenarios ---------------------------------------------------------------------------
@contextmanager
def scratch_postgres(server_url: str) -> Iterator[str]:
    """A database of its own on the Postgres server of ``server_url``, dropped afterwards."""
    name = f"gateway_smoke_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def production(workdir: Path, upstream: FakeUpstream, postgres: str, redis: str) -> str:
    build_dir = REPO / "build"  # a non-editable install builds here; leave no copy behind
    had_build_dir = build_dir.exists()
    try:
        return _production(workdir, upstream, postgres, redis)
    finally:
        if not had_build_dir:
            shutil.rmtree(build_dir, ignore_errors=True)


def _production(workdir: Path, upstream: FakeUpstream, postgres: str, redis: str) -> str:
    exported, commands = production_commands()
    venv = fresh_venv(workdir / "venv-production")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    port = free_port()
    with scratch_postgres(postgres) as database_url:
        stack = Stack(workdir, base_env(workdir, upstream))
        stack.env.update(
            DATABASE_URL=database_url,
            CELERY_BROKER_URL=redis,
            SECRET_KEY=secrets.token_urlsafe(50),
            ALLOWED_HOSTS="127.0.0.1,localhost",
            # A queue of its own: no other worker on this broker takes its bells.
            GATEWAY_QUEUE=f"smoke-{secrets.token_hex(4)}",
            PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        )
        missing = [name for name in exported if name not in stack.env]
        if missing:
            raise SmokeFailure(f"README exports {missing}, which the smoke test does not set")
        try:
            for words in commands:
                program = words[0]
                if program in {"granian", "celery"}:
                    argv = [str(venv / "bin" / program), *words[1:]]
                    if program == "granian":  # loopback only, on a free port
                        argv[argv.index("--host") + 1] = "127.0.0.1"
                        argv[argv.index("--port") + 1] = str(port)
                    stack.start(
                        f"production-{program}-{words[3] if program == 'celery' else 'web'}", argv
                    )
                else:
                    while words:  # one && chain, step by step
                        step = words[: words.index("&&")] if "&&" in words else words
                        words = words[len(step) + 1 :]
                        stack.run([str(venv / "bin" / step[0]), *step[1:]])
            base_url = f"http://127.0.0.1:{port}"
            wait_until_healthy(base_url, stack.processes)
            raw_key = create_key(stack, venv / "bin" / "python")
            return submit_and_complete(base_url, raw_key, stack.processes)
        finally:
            stack.stop_all()


def embedded(workdir: Path, upstream: FakeUpstream) -> str:
    venv = fresh_venv(workdir / "venv-embedded")
    command = run_command()
    if ".venv" not in command:
        raise SmokeFailure(f"README's run command names no .venv: {command}")
    port = free_port()
    stack = Stack(workdir, base_env(workdir, upstream))
    stack.env.update(HOST="127.0.0.1", PORT=str(port))
    gateway = stack.start(
        "embedded-rungateway", ["bash", "-c", command.replace(".venv", str(venv))]
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_healthy(base_url, [gateway])
        raw_key = create_key(stack, venv / "bin" / "python")
        return submit_and_complete(base_url, raw_key, [gateway])
    finally:
        gateway.stop(signal.SIGINT)  # Ctrl-C, as a user stops it


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default="postgres://root@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--only", choices=["production", "embedded"])
    args = parser.parse_args()
    scenarios = {
        "production": lambda workdir, up: production(workdir, up, args.postgres, args.redis),
        "embedded": embedded,
    }
    passed = failed = 0
    upstream = FakeUpstream().start()
    try:
        for name, scenario in scenarios.items():
            if args.only and name != args.only:
                continue
            workdir = Path(tempfile.mkdtemp(prefix=f"gateway-smoke-{name}-"))
            started = time.monotonic()
            try:
                job_id = scenario(workdir, upstream)
            except SmokeFailure as exc:
                failed += 1
                print(f"smoke {name}: FAILED: {exc}\n  logs kept in {workdir}", flush=True)
                continue
            passed += 1
            print(
                f"smoke {name}: job {job_id} completed, every process stopped "
                f"({time.monotonic() - started:.0f} s)",
                flush=True,
            )
            shutil.rmtree(workdir, ignore_errors=True)
    finally:
        upstream.stop()
    print(f"smoke: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
