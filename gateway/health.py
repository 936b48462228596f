from __future__ import annotations

from django.db import DatabaseError, connection
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway.http.error_schema import ErrorSerializer

HEALTH = inline_serializer(
    "Health", {"status": serializers.CharField(), "database": serializers.CharField()}
)


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
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except DatabaseError:
            return Response({"status": "unavailable", "database": "unreachable"}, status=503)
        return Response({"status": "ok", "database": "ok"})
