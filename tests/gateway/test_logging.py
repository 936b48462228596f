"""Request ids and log lines: X-Request-ID in and out, and JSON lines carrying the ids."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from structlog.contextvars import bind_contextvars, clear_contextvars

from gateway.logconfig import formatter, logging_config
from gateway.request_id import MAX_LENGTH, request_id_from

pytestmark = pytest.mark.django_db

MISSING_JOB = "/v1/async/completions/00000000-0000-0000-0000-000000000000"


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Everything logged meanwhile, through the LOG_FORMAT=json formatter."""
    config = formatter("json")
    make = config.pop("()")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(make(**config))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)
    clear_contextvars()


def _parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_sane_request_id_is_sent_back(key_client):
    response = key_client.get(MISSING_JOB, HTTP_X_REQUEST_ID="client-id_1.2:3")
    assert response["X-Request-ID"] == "client-id_1.2:3"


@pytest.mark.parametrize(
    "given", ["x" * (MAX_LENGTH + 1), "has space", 'quote"d', "üñï", "a\tb", ""]
)
def test_an_unfit_request_id_is_replaced_by_a_new_one(given):
    made = request_id_from(given)
    assert made != given
    assert len(made) == 32 and made.isalnum()


def test_every_answer_carries_a_request_id_errors_included(api_client, key_client):
    for response in (
        api_client.get(MISSING_JOB),  # 401
        key_client.get(MISSING_JOB),  # 404
        api_client.get("/health"),
        api_client.get("/no-such-page"),
    ):
        assert len(response["X-Request-ID"]) == 32, response.status_code
    assert api_client.get("/health")["X-Request-ID"] != api_client.get("/health")["X-Request-ID"]


def test_an_error_is_logged_as_json_with_its_request_id_and_the_clients_event_id(
    key_client, json_lines
):
    response = key_client.get(MISSING_JOB, HTTP_X_REQUEST_ID="trace-42")
    assert response.status_code == 404
    lines = [line for line in _parsed(json_lines) if line["event"] == "error answered"]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == "trace-42"
    assert line["event_id"] == response.json()["event_id"]
    assert (line["status_code"], line["code"], line["level"]) == (404, "job_not_found", "info")
    assert line["logger"] == "gateway.http.errors"
    assert line["timestamp"].endswith("Z")


@pytest.mark.parametrize("path", [MISSING_JOB, "/no-such-page"])
def test_an_error_answered_is_one_line_not_one_of_djangos_beside_it(key_client, json_lines, path):
    response = key_client.get(path)
    assert response.status_code == 404
    assert [line["event"] for line in _parsed(json_lines)] == ["error answered"]


def test_djangos_line_for_a_server_error_stays(json_lines):
    logging.getLogger("django.request").error("Internal Server Error: %s", "/v1/x")
    logging.getLogger("django.request").warning("Not Found: %s", "/v1/x")
    assert [line["event"] for line in _parsed(json_lines)] == ["Internal Server Error: /v1/x"]


def test_lines_of_other_libraries_carry_the_bound_ids_too(json_lines):
    bind_contextvars(job_id="job-1")
    logging.getLogger("celery.worker").warning("something %s", "happened")
    (line,) = _parsed(json_lines)
    assert line == {
        "event": "something happened",
        "job_id": "job-1",
        "level": "warning",
        "logger": "celery.worker",
        "timestamp": line["timestamp"],
    }


def test_an_exception_is_one_json_line_with_its_traceback(json_lines):
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("jobs.engine").exception("failed")
    (line,) = _parsed(json_lines)
    assert line["event"] == "failed"
    assert line["exception"][0]["exc_type"] == "ValueError"


def _failing_call_with_a_secret_at_hand() -> None:
    headers = {"Authorization": "Bearer sk-provider-SECRET-in-a-local"}
    raise ConnectionError(f"refused ({len(headers)} headers)")


def test_a_traceback_as_json_shows_no_local_variable_a_secret_could_be_in(json_lines):
    try:
        _failing_call_with_a_secret_at_hand()
    except ConnectionError:
        logging.getLogger("providers.routing").exception("adapter failed")
    (line,) = _parsed(json_lines)
    frames = line["exception"][0]["frames"]
    assert [f["name"] for f in frames][-1] == "_failing_call_with_a_secret_at_hand"
    assert not [f for f in frames if f.get("locals")]
    assert "SECRET" not in json_lines.getvalue()


def test_a_traceback_in_the_plain_format_shows_no_local_variable_either():
    config = formatter("plain")
    make = config.pop("()")
    try:
        _failing_call_with_a_secret_at_hand()
    except ConnectionError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("providers.routing", logging.ERROR, "", 0, "failed", (), exc_info)
    text = make(**config).format(record)
    assert "_failing_call_with_a_secret_at_hand" in text and "ConnectionError" in text
    assert "SECRET" not in text


def test_the_plain_format_is_readable_key_value_lines():
    config = formatter("plain")
    make = config.pop("()")
    record = logging.LogRecord("jobs.engine", logging.INFO, "", 0, "job finished", (), None)
    record.status = "completed"
    text = make(**config).format(record)
    assert "job finished" in text and "status=completed" in text and "\n" not in text


def test_the_logging_setting_sends_every_logger_through_one_formatter():
    config = logging_config("INFO", "json")
    assert config["root"] == {"handlers": ["console"], "level": "INFO"}
    assert config["handlers"]["console"]["formatter"] == "gateway"


def test_celerys_per_task_lines_are_left_out_so_an_idle_worker_stays_quiet():
    loggers = logging_config("INFO", "plain")["loggers"]
    for name in ("celery.worker.strategy", "celery.app.trace", "celery.beat"):
        assert loggers[name] == {"level": "WARNING"}
