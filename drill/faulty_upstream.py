"""The benchmark's fake upstream with fault modes, chosen by the model name of a completion.

A request for one of the ``FAULTS`` models misbehaves; any other model gets the benchmark
upstream's normal answer (``bench.upstream``, unchanged)::

    python -m drill.faulty_upstream --port 9100 --hang-seconds 600
    curl -X POST localhost:9100/v1/completions -d '{"model": "fault-bad-json", "prompt": "x"}'
    curl localhost:9100/__drill/faults        # how many requests each fault answered

Through the gateway the model is ``openai/fault-bad-json`` (the provider prefix is stripped).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from bench.upstream import make_app, run_until_stopped

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Fault = Callable[[web.Request], Awaitable[web.StreamResponse]]

BROKEN_JSON = b'{"id": "cmpl-broken", "object": "text_completion", "choices": [{"text": "Hel'
HTML_PAGE = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
FAULT_COUNTS = web.AppKey("fault_counts", dict[str, int])


def _hang(seconds: float) -> Fault:
    async def hang(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.Response(status=504, text="the drill's upstream hung on purpose")

    return hang


async def bad_json(request: web.Request) -> web.StreamResponse:
    """200 with a JSON content type and a body that is not JSON."""
    return web.Response(body=BROKEN_JSON, content_type="application/json")


async def wrong_type(request: web.Request) -> web.StreamResponse:
    """200 with an HTML page, as a misconfigured proxy in front of a provider answers."""
    return web.Response(body=HTML_PAGE, content_type="text/html")


def _drop_connection(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()


async def truncated(request: web.Request) -> web.StreamResponse:
    """Headers announce a full reply; half of it is sent, then the connection is cut."""
    whole = json.dumps({"id": "cmpl-cut", "object": "text_completion", "choices": []}).encode()
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(whole)
    await response.prepare(request)
    await response.write(whole[: len(whole) // 2])
    _drop_connection(request)
    return response


async def close(request: web.Request) -> web.StreamResponse:
    """The connection is cut before any answer."""
    _drop_connection(request)
    return web.Response()  # never sent: the connection is gone


def faults(hang_seconds: float) -> dict[str, Fault]:
    """The fault modes by model name."""
    return {
        "fault-hang": _hang(hang_seconds),
        "fault-bad-json": bad_json,
        "fault-wrong-type": wrong_type,
        "fault-truncated": truncated,
        "fault-close": close,
    }


def _model_of(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return ""
    return str(body.get("model", "")) if isinstance(body, dict) else ""


def make_faulty_app(latency_ms: float = 0.0, hang_seconds: float = 600.0) -> web.Application:
    """``bench.upstream.make_app`` plus the fault modes and a ``/__drill/faults`` counter."""
    modes = faults(hang_seconds)
    counts = dict.fromkeys(modes, 0)

    @web.middleware
    async def misbehave(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "POST" and request.path.endswith("/completions"):
            model = _model_of(await request.read())  # the body stays readable for handler
            fault = modes.get(model)
            if fault is not None:
                counts[model] += 1
                return await fault(request)
        return await handler(request)

    async def fault_counts(request: web.Request) -> web.Response:
        return web.json_response(counts)

    app = make_app(latency_ms)
    app[FAULT_COUNTS] = counts
    app.middlewares.append(misbehave)
    app.router.add_get("/__drill/faults", fault_counts)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--hang-seconds", type=float, default=600.0)
    args = parser.parse_args(argv)
    app = make_faulty_app(args.latency_ms, args.hang_seconds)
    # Hanging requests are not worth waiting for when the drill stops the upstream.
    run_until_stopped(app, args.host, args.port, shutdown_timeout=1.0)


if __name__ == "__main__":
    main()
