"""The error shape of every 4xx/5xx and of a failed job's ``error``, as the OpenAPI document
describes it. ``errors.py`` builds the bodies; these serializers only document them."""

from __future__ import annotations

from rest_framework import serializers


class JobErrorDetailSerializer(serializers.Serializer):
    type = serializers.CharField()
    code = serializers.CharField(allow_null=True)
    message = serializers.CharField()
    param = serializers.CharField(allow_null=True)
    event_id = serializers.CharField()


class ExtraFieldsSerializer(serializers.Serializer):
    provider = serializers.CharField(allow_null=True)
    model_requested = serializers.CharField(allow_null=True)
    request_type = serializers.CharField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    """The error shape of every 4xx/5xx and of a failed job's ``error``."""

    event_id = serializers.CharField()
    type = serializers.CharField()
    is_bifrost_error = serializers.BooleanField(
        help_text="True when the gateway produced the error, false when it relays a provider's."
    )
    status_code = serializers.IntegerField()
    error = JobErrorDetailSerializer()
    extra_fields = ExtraFieldsSerializer()
