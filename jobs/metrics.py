"""The gateway's Prometheus metrics, shared by every process through GATEWAY_METRICS_DIR.

prometheus-client's multiprocess mode: each process (granian's web processes, each Celery
worker or prefork child, beat) writes its own samples to memory-mapped files in the directory
the settings name (``PROMETHEUS_MULTIPROC_DIR``), and ``/metrics`` sums them at scrape time.
A sample update is an in-memory write; nothing here touches the database or the network.

Files are named by process: host name and pid, so processes of several containers sharing one
directory (docker-compose.yml's volume) never write to the same file. An engine that stops
drops its in-flight gauge (``forget_this_process``); launchers empty the directory at start.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, multiprocess, values

from jobs.token_usage import TokenUsage

_HOST = socket.gethostname().replace("_", "-")  # the collector splits file names on "_"


def _name_this_process() -> None:
    global _process_id
    _process_id = f"{_HOST}-{os.getpid()}"


_process_id = ""
_name_this_process()
# prometheus-client asks for the process's identifier on every sample update, to notice a
# fork; kept here and renamed in a forked child, it costs no system call per update.
os.register_at_fork(after_in_child=_name_this_process)


def process_id() -> str:
    """This process in the metric files' names, and in the in-flight gauge's ``pid`` label."""
    return _process_id


if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
    values.ValueClass = values.MultiProcessValue(process_identifier=process_id)

API_REQUESTS = Counter(
    "gateway_api_requests_total",
    "Job API answers: submits, polls and cancels, by request type and status code.",
    ["operation", "request_type", "status_code"],
)
JOBS_FINISHED = Counter(
    "gateway_jobs_finished_total",
    "Jobs that reached a terminal status, by the provider and model that served (or failed) them.",
    ["status", "request_type", "provider", "model"],
)
# Labelled by the engine's id (as its log lines name it), so a process without an engine (the
# web, beat, a management command) never writes a sample of it.
CALLS_IN_FLIGHT = Gauge(
    "gateway_worker_calls_in_flight",
    "Jobs a worker's engine has in flight now, by engine (host:pid:id) and process.",
    ["worker"],
    multiprocess_mode="liveall",
)
UPSTREAM_SECONDS = Histogram(
    "gateway_upstream_call_seconds",
    "Duration of each call to a provider, by outcome: ok, transient_error (retried or moved "
    "on from) or permanent_error.",
    ["provider", "model", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, float("inf")),
)
RETRIES = Counter(
    "gateway_upstream_retries_total",
    "Calls made again to the same provider and model after a transient error.",
    ["provider", "model"],
)
FALLBACKS = Counter(
    "gateway_fallbacks_total",
    "Fallback targets tried after the targets before them failed, by the fallback's provider "
    "and model.",
    ["provider", "model"],
)
TOKENS = Counter(
    "gateway_tokens_total",
    "Tokens of completed jobs as their providers reported them, by virtual key name, model "
    "and direction (prompt or completion).",
    ["key", "model", "direction"],
)
COST = Counter(
    "gateway_cost_usd_total",
    'USD charged for completed jobs (README, "Budgets and spend"), by virtual key name and the '
    "model that served them; unpriced models add nothing.",
    ["key", "model"],
)
WEBHOOK_DELIVERIES = Counter(
    "gateway_webhook_deliveries_total",
    "Webhook delivery attempts, by outcome: delivered, retry (tried again later) or rejected.",
    ["outcome"],
)

# The request path's children, kept by label values: ``labels()`` validates and joins its
# arguments on every call, and submits and polls run at the web server's limit.
_api_children: dict[tuple[str, str, int], Any] = {}


def count_answer(operation: str, request_type: str, status_code: int) -> None:
    key = (operation, request_type, status_code)
    child = _api_children.get(key)
    if child is None:
        child = _api_children[key] = API_REQUESTS.labels(operation, request_type, str(status_code))
    child.inc()


def count_tokens(key: str, model: str, used: TokenUsage) -> None:
    for direction, count in used._asdict().items():
        if count:
            TOKENS.labels(key, model, direction).inc(count)


def count_cost(key: str, model: str, cost_usd: Decimal) -> None:
    if cost_usd:
        COST.labels(key, model).inc(float(cost_usd))


def count_finished(status: str, request_type: str, provider: str, model: str) -> None:
    JOBS_FINISHED.labels(status, request_type, provider, model).inc()


def count_finished_many(status: str, jobs: Iterable[tuple[str, str, str]]) -> None:
    """``jobs``: (request type, provider, model) of each job that ended with ``status``."""
    for request_type, provider, model in jobs:
        count_finished(status, request_type, provider, model)


def set_calls_in_flight(worker_id: str, count: int) -> None:
    CALLS_IN_FLIGHT.labels(worker_id).set(count)


def forget_this_process() -> None:
    """This process is stopping: its live gauges leave the sums."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        multiprocess.mark_process_dead(process_id())
