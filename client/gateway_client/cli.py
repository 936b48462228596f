"""``gateway-client``: submit a job, wait for it with a progress indicator, get or cancel it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import httpx
from openai import BaseModel
from openai.types import Completion
from openai.types.chat import ChatCompletion
from openai.types.responses import Response
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from gateway_client.client import DEFAULT_WAIT, Gateway
from gateway_client.errors import (
    APIError,
    GatewayClientError,
    JobCancelledError,
    JobFailedError,
    WaitTimeout,
)
from gateway_client.jobs import Job
from gateway_client.request_types import BY_NAME, RequestType

FAILED, TIMED_OUT = 1, 3
EXIT_STATUS = (
    "exit status: 0 done; 1 refused by the gateway, or the job failed or was cancelled; "
    "2 bad usage; 3 the wait's timeout passed first (the job goes on: `wait` picks it up again)"
)


def parser() -> argparse.ArgumentParser:
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument("--url", help="the gateway (default: $GATEWAY_URL, else localhost)")
    connection.add_argument("--api-key", help="a virtual key or JWT (default: $GATEWAY_API_KEY)")
    connection.add_argument(
        "--type",
        choices=list(BY_NAME),
        default="chat",
        help="the request type (default: chat)",
    )
    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument(
        "--json", action="store_true", help="print the whole result object as JSON"
    )
    waiting.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_WAIT,
        help=f"seconds to wait before giving up (default: {DEFAULT_WAIT:g})",
    )

    top = argparse.ArgumentParser(
        prog="gateway-client",
        description="Submit jobs to the AI gateway, wait for their results, get or cancel them.",
        epilog=EXIT_STATUS,
    )
    commands = top.add_subparsers(dest="command", required=True)
    submit = commands.add_parser(
        "submit", parents=[connection, waiting], help="submit a job (and wait for it)"
    )
    submit.add_argument("--model", required=True, help="provider/model, e.g. openai/gpt-4o-mini")
    submit.add_argument(
        "--prompt",
        required=True,
        help="the text: chat's user message, completions' prompt, "
        "responses' and embeddings' input; - reads it from standard input",
    )
    submit.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another body parameter, VALUE as JSON when it parses (max_tokens=16), else text",
    )
    submit.add_argument("--ttl", type=int, help="seconds the result is kept after completion")
    submit.add_argument("--idempotency-key", help="makes a repeated submit the same job")
    submit.add_argument("--wait", action="store_true", help="wait for the result and print it")
    for name, what in (("get", "print a job"), ("cancel", "cancel a job")):
        command = commands.add_parser(name, parents=[connection], help=what)
        command.add_argument("job_id")
    wait = commands.add_parser(
        "wait", parents=[connection, waiting], help="wait for a job and print its result"
    )
    wait.add_argument("job_id")
    return top


def body(kind: RequestType[Any], args: argparse.Namespace) -> dict[str, Any]:
    text = sys.stdin.read() if args.prompt == "-" else args.prompt
    if kind.name == "chat":
        sent: dict[str, Any] = {"messages": [{"role": "user", "content": text}]}
    elif kind.name == "completions":
        sent = {"prompt": text}
    else:
        sent = {"input": text}
    for param in args.param:
        name, equals, value = param.partition("=")
        if not equals or not name:
            raise SystemExit(f"gateway-client: --param {param!r} is not NAME=VALUE")
        try:
            sent[name] = json.loads(value)
        except ValueError:
            sent[name] = value
    return {"model": args.model, **sent}


def result_text(result: BaseModel, as_json: bool) -> str:
    """The reply's text, or the whole object as JSON (embeddings, tool calls, or asked for)."""
    if not as_json:
        if isinstance(result, Completion):
            return "\n".join(choice.text for choice in result.choices)
        if isinstance(result, ChatCompletion):
            contents = [choice.message.content for choice in result.choices]
            if all(content is not None for content in contents):
                return "\n".join(content or "" for content in contents)
        if isinstance(result, Response):
            return result.output_text
    return result.model_dump_json(indent=2)


def job_json(job: Job[Any]) -> str:
    return json.dumps(
        {
            "id": job.id,
            "type": job.request_type.name,
            "status": job.status,
            "created_at": job.created_at.isoformat(),
            "completed_at": job.completed_at and job.completed_at.isoformat(),
            "expires_at": job.expires_at and job.expires_at.isoformat(),
            "status_code": job.status_code,
            "result": job.result and job.result.model_dump(mode="json"),
            "error": job.error and job.error.model_dump(mode="json"),
        },
        indent=2,
    )


def wait_with_progress(
    gateway: Gateway, kind: RequestType[Any], job_id: str, timeout: float
) -> BaseModel:
    console = Console(stderr=True)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"job {job_id}: pending", total=None)

        def seen(job: Job[Any]) -> None:
            progress.update(task, description=f"job {job.id}: {job.status}")

        return gateway.wait(kind, job_id, timeout=timeout, on_poll=seen)


def run(args: argparse.Namespace) -> int:
    kind = BY_NAME[args.type]
    with Gateway(args.url, args.api_key) as gateway:
        if args.command == "submit":
            job = gateway.submit(
                kind, body(kind, args), ttl=args.ttl, idempotency_key=args.idempotency_key
            )
            if not args.wait:
                print(job_json(job))
                return 0
            job_id = job.id
        elif args.command == "get":
            print(job_json(gateway.get(kind, args.job_id)))
            return 0
        elif args.command == "cancel":
            print(job_json(gateway.cancel(kind, args.job_id)))
            return 0
        else:
            job_id = args.job_id
        try:
            result = wait_with_progress(gateway, kind, job_id, args.timeout)
        except KeyboardInterrupt:
            print(
                f"job {job_id} goes on: gateway-client wait --type {kind.name} {job_id}",
                file=sys.stderr,
            )
            return 130
        print(result_text(result, args.json))
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except JobFailedError as exc:
        print(f"gateway-client: {exc}", file=sys.stderr)
        print(exc.error.model_dump_json(indent=2), file=sys.stderr)
        return FAILED
    except WaitTimeout as exc:
        print(
            f"gateway-client: {exc}; gateway-client wait --type {args.type} {exc.job.id}",
            file=sys.stderr,
        )
        return TIMED_OUT
    except APIError as exc:
        print(f"gateway-client: {exc}", file=sys.stderr)
        if exc.body is not None:
            print(exc.body.model_dump_json(indent=2), file=sys.stderr)
        return FAILED
    except (JobCancelledError, GatewayClientError) as exc:
        print(f"gateway-client: {exc}", file=sys.stderr)
        return FAILED
    except httpx.TransportError as exc:
        print(f"gateway-client: no answer from the gateway: {exc!r}", file=sys.stderr)
        return FAILED


if __name__ == "__main__":
    sys.exit(main())
