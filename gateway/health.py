"""``/health`` (liveness: the process answers and reaches its database) and ``/ready``
(readiness: the database, the broker, and a worker's engine seen lately)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from kombu.exceptions import KombuError
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway.celery import app as celery_app
from gateway.http.error_schema import ErrorSerializer
from jobs import heartbeats

logger = logging.getLogger(__name__)

HEALTH = inline_serializer(
    "Health", {"status": serializers.CharField(), "database": serializers.CharField()}
)
BROKER_TIMEOUT = 2.0  # seconds


def _database_reachable() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return False
    return True


def _broker_reachable() -> bool:
    try:
        with celery_app.connection_for_write() as broker:
            broker.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT
            )
    except (KombuError, OSError) as exc:
        logger.warning("readiness: the broker is unreachable (%s)", type(exc).__name__)
        return False
    return True


def _worker_seen() -> bool:
    try:
        seen = heartbeats.last_seen()
    except DatabaseError:
        return False
    window = timedelta(seconds=settings.GATEWAY_READY_WORKER_SECONDS)
    return seen is not None and seen >= timezone.now() - window


class HealthView(APIView):
    """Liveness and database reachability, for load balancers and orchestrators."""

    authentication_classes: list[type] = []
    permission_classes: list[type] = []

    @extend_schema(
        summary="Health check",
        responses={
            200: HEALTH,
            503: OpenApiResponse(HEALTH, description="The database is unreachable"),
            406: OpenApiResponse(ErrorSerializer, description="The Accept header allows no JSON"),
        },
    )
    def get(self, request: Request) -> Response:
        if not _database_reachable():
            return Response({"status": "unavailable", "database": "unreachable"}, status=503)
        return Response({"status": "ok", "database": "ok"})


class ReadyView(APIView):
    """Readiness: whether jobs submitted now will run.

    The database (the record), the broker (the bell) and a worker's engine seen within
    GATEWAY_READY_WORKER_SECONDS. Each check is named in the body, ``ok`` or what is wrong.
    """

    authentication_classes: list[type] = []
    permission_classes: list[type] = []

    # A probe's endpoint, like /metrics a scraper's, and outside the API document: its 503
    # is what it answers wherever no worker runs (a fuzz run of the document, a test).
    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        database = _database_reachable()
        checks = {
            "database": "ok" if database else "unreachable",
            "broker": "ok" if _broker_reachable() else "unreachable",
            # Without the database no heartbeat can be read.
            "worker": ("ok" if _worker_seen() else "no heartbeat") if database else "unknown",
        }
        ready = all(value == "ok" for value in checks.values())
        return Response(
            {"status": "ok" if ready else "unavailable", **checks}, status=200 if ready else 503
        )
