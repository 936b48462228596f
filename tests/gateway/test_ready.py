"""GET /ready: the database, the broker and a worker's heartbeat, each named in the answer."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import DatabaseError
from django.utils import timezone
from kombu.exceptions import OperationalError

from jobs import heartbeats
from jobs.models import WorkerHeartbeat

pytestmark = pytest.mark.django_db


def test_ready_is_200_when_a_worker_was_seen_lately(api_client):
    heartbeats.beat("host:1:abc")
    response = api_client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok", "worker": "ok"}


def test_ready_is_503_naming_the_worker_when_no_heartbeat_was_ever_written(api_client):
    response = api_client.get("/ready")
    assert response.status_code == 503
    assert response.json()["worker"] == "no heartbeat"
    assert response.json()["status"] == "unavailable"


def test_ready_is_503_when_the_last_heartbeat_is_older_than_the_setting(api_client, settings):
    settings.GATEWAY_READY_WORKER_SECONDS = 30
    WorkerHeartbeat.objects.create(
        worker_id="host:1:abc", seen_at=timezone.now() - timedelta(seconds=31)
    )
    assert api_client.get("/ready").status_code == 503
    settings.GATEWAY_READY_WORKER_SECONDS = 60
    assert api_client.get("/ready").status_code == 200


def test_a_stopped_engine_takes_its_heartbeat_with_it(api_client):
    heartbeats.beat("host:1:abc")
    heartbeats.stop("host:1:abc")
    assert api_client.get("/ready").json()["worker"] == "no heartbeat"


def test_ready_is_503_naming_the_database_when_it_is_unreachable(api_client, monkeypatch):
    def broken_cursor(*args, **kwargs):
        raise DatabaseError("connection refused")

    heartbeats.beat("host:1:abc")
    monkeypatch.setattr("gateway.health.connection.cursor", broken_cursor)
    monkeypatch.setattr("jobs.heartbeats.last_seen", lambda: pytest.fail("read without a database"))
    response = api_client.get("/ready")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "database": "unreachable",
        "broker": "ok",
        "worker": "unknown",
    }


def test_ready_is_503_naming_the_broker_when_it_is_unreachable(api_client, monkeypatch):
    class Unreachable:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def ensure_connection(self, **kwargs):
            raise OperationalError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")

    heartbeats.beat("host:1:abc")
    monkeypatch.setattr("gateway.health.celery_app.connection_for_write", Unreachable)
    response = api_client.get("/ready")
    assert response.status_code == 503
    assert response.json()["broker"] == "unreachable"
    assert response.json()["database"] == "ok"


def test_stale_heartbeats_are_purged_and_fresh_ones_kept():
    WorkerHeartbeat.objects.create(worker_id="dead", seen_at=timezone.now() - timedelta(hours=2))
    heartbeats.beat("alive")
    assert heartbeats.purge_stale() == 1
    assert list(WorkerHeartbeat.objects.values_list("worker_id", flat=True)) == ["alive"]


def test_a_beat_moves_the_engines_row_forward():
    WorkerHeartbeat.objects.create(worker_id="w", seen_at=timezone.now() - timedelta(minutes=5))
    heartbeats.beat("w")
    assert heartbeats.last_seen() >= timezone.now() - timedelta(seconds=5)


def test_ready_and_metrics_stay_outside_the_api_document(api_client):
    paths = api_client.get("/openapi.json").json()["paths"]
    assert "/health" in paths
    assert "/ready" not in paths and "/metrics" not in paths
