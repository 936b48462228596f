"""docker-compose.yml describes the production shape (no engine here to run it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"


def load() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def command_of(service: dict[str, Any]) -> str:
    command = service["command"]
    return command if isinstance(command, str) else " ".join(command)


def test_compose_has_postgres_redis_web_worker_and_beat():
    services = load()["services"]
    assert {"postgres", "redis", "web", "worker", "beat", "migrate"} <= set(services)


def test_gateway_services_use_postgres_and_redis():
    services = load()["services"]
    for name in ("web", "worker", "beat", "migrate"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://"), name
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:6379"), name


def test_each_process_runs_the_right_command():
    services = load()["services"]
    assert "granian --interface wsgi gateway.wsgi:application" in command_of(services["web"])
    assert command_of(services["worker"]).startswith("celery -A gateway worker")
    assert command_of(services["beat"]).startswith("celery -A gateway beat")
    assert "migrate" in command_of(services["migrate"])


def test_web_and_workers_wait_for_migrations():
    services = load()["services"]
    for name in ("web", "worker", "beat"):
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully", name
