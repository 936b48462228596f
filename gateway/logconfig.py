"""Logging: one JSON object per line (``LOG_FORMAT=json``) or readable ``key=value`` lines.

Every logger (the gateway's, Django's, Celery's, granian's) is a standard-library logger whose
records go through structlog's ``ProcessorFormatter``: the context variables bound while a line
is logged are added to it, so every line of a request carries its ``request_id``
(``gateway.request_id``) and every line of a job its ``job_id`` (``jobs.engine``); fields given
with ``extra=`` come out as keys of their own.
"""

from __future__ import annotations

from typing import Any

import structlog
from structlog.tracebacks import ExceptionDictTransformer

FORMATS = ("json", "plain")


def _without_formatted_copies(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Another handler's formatter may have left its output on the record, where ExtraAdder
    would take it for an extra field."""
    event.pop("message", None)
    event.pop("asctime", None)
    return event


_PRE_CHAIN: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.ExtraAdder(),
    _without_formatted_copies,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def formatter(log_format: str) -> dict[str, Any]:
    """The ``logging.config`` formatter of ``log_format``."""
    # A traceback names each frame and line, never a frame's local variables: those hold
    # provider keys, credentials in base URLs and request headers.
    if log_format == "json":
        frames = ExceptionDictTransformer(show_locals=False)
        render: list[Any] = [
            structlog.processors.ExceptionRenderer(frames),
            structlog.processors.JSONRenderer(),
        ]
    else:
        plain = structlog.dev.plain_traceback
        render = [
            structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0, exception_formatter=plain)
        ]
    return {
        "()": structlog.stdlib.ProcessorFormatter,
        "processors": [structlog.stdlib.ProcessorFormatter.remove_processors_meta, *render],
        "foreign_pre_chain": _PRE_CHAIN,
    }


def logging_config(level: str, log_format: str) -> dict[str, Any]:
    """Django's LOGGING: one handler on stderr, through the formatter of ``log_format``."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"gateway": formatter(log_format)},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "gateway"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "INFO"},
            # Django's own line for every 4xx answer would repeat the gateway's "error answered"
            # line (gateway.http.errors) in another shape; its lines for 5xx, with their
            # tracebacks, stay.
            "django.request": {"level": "ERROR"},
            # axes announces itself at every start: noise before a command's own output.
            "axes.apps": {"level": "WARNING"},
            # Celery's line per task received and run, and beat's per task sent: beat's periodic
            # tasks would make an idle worker and beat speak every 15 s. Failures still log.
            "celery.worker.strategy": {"level": "WARNING"},
            "celery.app.trace": {"level": "WARNING"},
            "celery.beat": {"level": "WARNING"},
            # granian's own handlers would print its lines a second time, in its format.
            "_granian": {"handlers": [], "propagate": True},
            "granian.access": {"handlers": [], "propagate": True},
        },
    }
