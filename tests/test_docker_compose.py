"""docker-compose.yml describes the production shape (no engine here to run it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gateway.celery import app as celery_app
from tests.environment import variables_read_by_the_gateway

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


GATEWAY_SERVICES = ("web", "worker", "beat", "migrate")


def test_every_variable_in_dot_env_reaches_the_gateways_containers():
    services = load()["services"]
    for name in GATEWAY_SERVICES:
        assert services[name]["env_file"] == [{"path": ".env", "required": False}], name


def test_compose_sets_only_variables_the_code_reads():
    # .env carries every other one (and a new one without an edit here); a name set in the
    # file but read by nothing would be a typo that silently leaves a default in place.
    read = variables_read_by_the_gateway()
    for name in GATEWAY_SERVICES:
        assert set(load()["services"][name]["environment"]) <= read, name


def test_compose_refuses_to_start_without_a_secret_key_or_host_names():
    environment = load()["services"]["web"]["environment"]
    for name in ("SECRET_KEY", "ALLOWED_HOSTS"):
        assert environment[name].startswith(f"${{{name}:?"), name


def test_the_worker_is_healthy_while_it_answers_a_ping_as_its_own_node():
    check = " ".join(load()["services"]["worker"]["healthcheck"]["test"])
    assert "celery -A gateway inspect ping -d celery@$$HOSTNAME" in check


def test_beat_is_healthy_while_the_schedule_it_writes_is_fresh(settings):
    beat = load()["services"]["beat"]
    schedule = beat["command"][beat["command"].index("--schedule") + 1]
    check = " ".join(beat["healthcheck"]["test"])
    directory, name = schedule.rsplit("/", 1)
    assert f"find {directory} " in check
    assert f"-name '{name}*'" in check
    assert "-mmin -1" in check
    # Beat writes the file after each task it sends; the most frequent is due every 15 s.
    assert settings.CELERY_BEAT_SYNC_EVERY == 1
    assert min(entry["schedule"] for entry in celery_app.conf.beat_schedule.values()) < 60


def test_the_web_health_check_asks_for_liveness_and_readiness_under_a_host_it_answers_to():
    check = load()["services"]["web"]["healthcheck"]["test"]
    assert check == [
        "CMD",
        "python",
        "-m",
        "gateway.healthcheck",
        "http://127.0.0.1:8000/health",
        "http://127.0.0.1:8000/ready",
    ]
