"""What one submit and one poll cost the web process, measured in-process without a server.

    python -m bench.request_cost                 # CPU time per request (this thread's clock)
    python -m bench.request_cost --instructions  # instructions per request, under callgrind
    python -m bench.request_cost --schemas       # validating each request type's example body

Requests go straight to the gateway's WSGI application, as a web server thread sends them, on
the bench database (as ``make bench`` uses): a submit of a small valid body and a poll of a
completed job, for completions and for chat completions, and a completions submit with a key
that has every limit set (README, "Limits") and with one that has a budget (its spend is read
first), neither ever reached. Submits hand their job id to a stub, not the background publisher,
whose cost every submit it batches shares.

Instruction counts, unlike CPU time, do not move with what else the machine runs (the same code
gives the same count to within a fraction of a percent): ``--instructions`` is the figure to
compare two versions of a change by. It runs this module under valgrind's callgrind with no
measured requests and with ``--requests``, and divides the difference.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from contextlib import closing
from datetime import timedelta
from decimal import Decimal
from typing import Any
from wsgiref.util import setup_testing_defaults

from bench.scenarios import CHAT, COMPLETION, bench_config
from harness import runs
from harness.stack import REPO, ensure_database

WARMUP = 50
KINDS = ("submit", "poll", "chat_submit", "chat_poll", "limited_submit", "budget_submit")
# Limits no measured run reaches: the checks run, and every submit passes.
UNREACHED = 1_000_000_000


def _requests() -> dict[str, Callable[[], bytes]]:
    """One callable per kind, each sending one request through the WSGI application."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from gateway.access.models import VirtualKey
    from gateway.wsgi import application
    from jobs import services
    from jobs.charges import Charge, record_charges
    from jobs.models import AsyncJob, JobStatus

    call_command("migrate", "-v0")
    services.dispatch_soon = lambda: None
    name = f"request-cost-{time.time_ns()}"
    key, raw = VirtualKey.create_with_key(name=name)
    unreached = dict.fromkeys(
        ("requests_per_minute", "tokens_per_minute", "max_pending"), UNREACHED
    )
    _, limited = VirtualKey.create_with_key(name=f"{name}-limited", **unreached)
    # A key with a budget it never reaches, and a month of spend on two models in its ledger:
    # its submits read what it spent this month before they write.
    budget_key, budgeted = VirtualKey.create_with_key(
        name=f"{name}-budget", budget_usd=10**9, budget_period="monthly"
    )
    for days_ago in range(31):
        models = ("openai/gpt-4o", "openai/gpt-4o-mini")
        charges = [Charge(budget_key.pk, model, Decimal("0.001"), True, 30, 10) for model in models]
        record_charges(timezone.now() - timedelta(days=days_ago), charges)
    hello = "Hello from the fake upstream."
    usage = dict(prompt_tokens=3, completion_tokens=6, total_tokens=9)
    text = dict(id="cmpl-bench", object="text_completion", choices=[{"text": hello, "index": 0}])
    message = dict(index=0, message={"role": "assistant", "content": hello}, finish_reason="stop")
    chat = dict(id="chatcmpl-bench", object="chat.completion", created=1, choices=[message])
    completed = {"virtual_key": key, "provider": "openai", "model": "gpt-bench", "result_ttl": 3600}
    completed |= {"status": JobStatus.COMPLETED, "status_code": 200}
    create = functools.partial(AsyncJob.objects.create, **completed)
    answer = {"model": "gpt-bench", "usage": usage}
    job = create(request_type="text_completion", request={"prompt": "Say hi"}, result=text | answer)
    chat_request = {"messages": [{"role": "user", "content": "Say hi"}]}
    chat_job = create(request_type="chat_completion", request=chat_request, result=chat | answer)
    body = json.dumps({"model": "openai/gpt-bench", "prompt": "Say hi", "max_tokens": 16}).encode()

    def send(method: str, path: str, payload: bytes, expected: str, token: str = raw) -> bytes:
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1:8000",
            "HTTP_AUTHORIZATION": f"Bearer {token}",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(payload)),
            "wsgi.input": io.BytesIO(payload),
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
        }
        setup_testing_defaults(environ)  # the rest, as any WSGI server sets it
        statuses: list[str] = []

        def start_response(status: str, *_: Any) -> Any:
            statuses.append(status)

        response: Any = application(environ, start_response)
        with closing(response):
            content = b"".join(response)
        if not statuses[0].startswith(expected):
            raise RuntimeError(f"{method} {path} answered {statuses[0]}: {content[:300]!r}")
        return content

    return {
        "submit": lambda: send("POST", COMPLETION.path, body, "202"),
        "poll": lambda: send("GET", f"{COMPLETION.path}/{job.id}", b"", "200"),
        "chat_submit": lambda: send("POST", CHAT.path, CHAT.body(0), "202"),
        "chat_poll": lambda: send("GET", f"{CHAT.path}/{chat_job.id}", b"", "200"),
        "limited_submit": lambda: send("POST", COMPLETION.path, body, "202", limited),
        "budget_submit": lambda: send("POST", COMPLETION.path, body, "202", budgeted),
    }


def cpu_times(count: int, rounds: int) -> dict[str, list[float]]:
    """Microseconds of this thread's CPU per request, ``rounds`` figures per kind."""
    requests = _requests()
    figures: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for _ in range(rounds):
        for kind, send in requests.items():
            for _ in range(WARMUP):
                send()
            started = time.thread_time()
            for _ in range(count):
                send()
            figures[kind].append((time.thread_time() - started) / count * 1e6)
    return figures


def _callgrind_total(kind: str, count: int) -> int:
    """Instructions of a child run of this module: warm-up, then ``count`` requests of ``kind``."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
    command += ["-m", "bench.request_cost", "--child", kind, "--requests", str(count)]
    done = subprocess.run(  # noqa: S603 - our own fixed command
        command, cwd=REPO, env=os.environ.copy(), capture_output=True, text=True, check=False
    )
    match = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"callgrind run failed: {done.stderr[-2000:]}")
    return int(match.group(1))


def instructions(count: int) -> dict[str, int]:
    """Instructions per request of each kind: (run with ``count``) - (run with none), / count."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (Debian package valgrind)")
    totals = {kind: _callgrind_total(kind, count) - _callgrind_total(kind, 0) for kind in KINDS}
    return {kind: total // count for kind, total in totals.items()}


def schema_costs() -> dict[str, float]:
    """Microseconds ``parse_request`` takes on each type's example body (the one the API document
    shows), the best of 7 runs of 20,000."""
    import django

    django.setup()
    from jobs.request_types import KINDS as TYPES
    from jobs.schemas.base import parse_request

    costs: dict[str, float] = {}
    for kind in TYPES:
        [body, *_] = kind.schema.model_json_schema()["examples"]
        parse_request(kind.schema, body)  # the example must be valid
        parse = functools.partial(parse_request, kind.schema, body)
        best = min(timeit.repeat(parse, number=20_000, repeat=7))
        costs[kind.request_type.value] = best / 20_000 * 1e6  # µs
    return costs


def main(argv: list[str] | None = None) -> int:
    parser = runs.parser(__doc__)
    parser.add_argument("--instructions", action="store_true", help="count under callgrind")
    parser.add_argument("--requests", type=int, default=None, help="measured requests per kind")
    parser.add_argument("--rounds", type=int, default=3, help="CPU-time rounds per kind")
    parser.add_argument("--schemas", action="store_true", help="request body validation only")
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # Nothing listens at the upstream address: no request here reaches a provider.
    config = bench_config("http://127.0.0.1:9")
    os.environ.update(config.env())
    if args.child:
        send = _requests()[args.child]
        for _ in range(WARMUP + (args.requests or 0)):
            send()
    elif args.schemas:
        for request_type, micros in schema_costs().items():
            print(f"{request_type:16} {micros:6.1f} µs per body")
    elif args.instructions:
        ensure_database(config.database_url)
        for kind, count in instructions(args.requests or 400).items():
            print(f"{kind}: {count:,} instructions per request")
    else:
        ensure_database(config.database_url)
        for kind, figures in cpu_times(args.requests or 2000, args.rounds).items():
            shown = ", ".join(f"{value:.0f}" for value in figures)
            print(f"{kind}: {min(figures):.0f} µs of CPU per request (rounds: {shown})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
