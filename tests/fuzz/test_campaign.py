"""The long fuzzing run's tally: it counts what a server answered and catches what is wrong."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from fuzz import run

DOCUMENT = {
    "openapi": "3.0.3",
    "info": {"title": "broken on purpose", "version": "1"},
    "paths": {
        "/items/{n}": {
            "get": {
                "parameters": [
                    {"name": "n", "in": "path", "required": True, "schema": {"type": "integer"}}
                ],
                "responses": {
                    "200": {
                        "description": "ok",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"n": {"type": "integer"}},
                                    "required": ["n"],
                                }
                            }
                        },
                    }
                },
            }
        }
    },
}


def broken_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Documents only a 200 with an integer ``n``; answers 500, 418 or a string ``n`` as well."""
    path = environ["PATH_INFO"]
    if path == "/openapi.json":
        status, body = "200 OK", DOCUMENT
    else:
        tail = path.rsplit("/", 1)[-1]
        if not tail.lstrip("-").isdigit():
            status, body = "500 Internal Server Error", {"boom": True}
        elif int(tail) % 2:
            status, body = "418 I'm a teapot", {"n": int(tail)}
        else:
            status, body = "200 OK", {"n": tail}
    start_response(status, [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def broken_server() -> Iterator[str]:
    server: WSGIServer = make_server("127.0.0.1", 0, broken_app, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


def test_the_tally_counts_every_answer_and_catches_5xx_and_undocumented_ones(broken_server):
    tally = run.fuzz(
        broken_server, "sk-bf-irrelevant", target=30, seed=1, examples=10, log=lambda _: None
    )

    assert tally.requests >= 30
    assert tally.rounds >= 1
    assert sum(tally.statuses.values()) == tally.requests
    assert tally.server_errors == tally.statuses["500"] > 0
    assert tally.nonconforming > 0
    checks = {failure["check"] for failure in tally.failures.values()}
    assert {"not_a_server_error", "status_code_conformance"} <= checks
    assert all("sk-bf-irrelevant" not in json.dumps(f) for f in tally.failures.values())


def test_the_report_shows_the_figures_and_failures(broken_server):
    tally = run.fuzz(
        broken_server, "sk-bf-irrelevant", target=10, seed=2, examples=5, log=lambda _: None
    )
    text = run.table(tally.as_dict())
    assert f"| requests sent | {tally.requests} |" in text
    assert f"| responses 5xx | {tally.server_errors} |" in text
    assert "not_a_server_error" in text
