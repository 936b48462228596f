"""Input and output of the async completions API."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from gateway.access.principals import Principal
from gateway.http.error_schema import ErrorSerializer
from gateway.http.errors import Forbidden, InvalidRequest
from jobs.fields import (
    IdentifierField,
    StrictBooleanField,
    StrictIntegerField,
    StrictNumberField,
    StrictStringField,
)
from jobs.models import AsyncJob, JobStatus
from providers import registry
from providers.base import Target

if TYPE_CHECKING:
    from jobs.sql import PolledJob

INT64_MAX = 2**63 - 1
# Vocabularies hold far fewer tokens; the bound keeps a 400-digit token id from reaching a provider.
MAX_TOKEN_ID = 2**31 - 1


@extend_schema_field(
    {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}
)
class PromptField(serializers.Field):
    default_error_messages = {
        "invalid": "Must be a string or a non-empty array of strings.",
        "too_many": "At most {limit} prompts are accepted in one request.",
        "too_long": "A prompt may hold at most {limit} characters.",
    }

    def to_internal_value(self, data: Any) -> str | list[str]:
        limit = settings.GATEWAY_MAX_PROMPT_CHARS
        if isinstance(data, str):
            if len(data) > limit:
                self.fail("too_long", limit=limit)
            return data
        if not isinstance(data, list) or not data or not all(isinstance(p, str) for p in data):
            self.fail("invalid")
        if len(data) > settings.GATEWAY_MAX_PROMPTS:
            self.fail("too_many", limit=settings.GATEWAY_MAX_PROMPTS)
        if any(len(p) > limit for p in data):
            self.fail("too_long", limit=limit)
        return list(data)

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field(
    {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 4}]}
)
class StopField(serializers.Field):
    default_error_messages = {"invalid": "Must be a string or an array of at most 4 strings."}

    def to_internal_value(self, data: Any) -> str | list[str]:
        if isinstance(data, str):
            return data
        if isinstance(data, list) and len(data) <= 4 and all(isinstance(s, str) for s in data):
            return list(data)
        self.fail("invalid")
        raise AssertionError("unreachable")

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field(
    {"type": "object", "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100}}
)
class LogitBiasField(serializers.Field):
    default_error_messages = {
        "invalid": f"Must be an object mapping token ids (integers from 0 to {MAX_TOKEN_ID}, "
        "as strings) to numbers from -100 to 100.",
    }

    def to_internal_value(self, data: Any) -> dict[str, float]:
        if not isinstance(data, dict) or len(data) > 1024:
            self.fail("invalid")
        for token, bias in data.items():
            valid_token = (
                token.isdigit()
                and token.isascii()
                and len(token) <= len(str(MAX_TOKEN_ID))
                and int(token) <= MAX_TOKEN_ID
            )
            # Compared exactly, so an integer of any size or an infinity is out of range.
            valid_bias = isinstance(bias, (int, float)) and not isinstance(bias, bool)
            if not (valid_token and valid_bias and -100 <= bias <= 100):
                self.fail("invalid")
        return dict(data)

    def to_representation(self, value: Any) -> Any:
        return value


def _target(value: str, param: str) -> Target:
    target = Target.parse(value)
    if not target.provider or not target.model:
        raise InvalidRequest(
            f"{param} must be in provider/model format, got {value!r}.",
            param=param,
            code="invalid_model",
        )
    if registry.get_provider(target.provider) is None:
        raise InvalidRequest(
            f"Provider {target.provider!r} is not configured on this gateway.",
            param=param,
            code="unknown_provider",
        )
    return target


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Say hi",
            value={"model": "openai/gpt-3.5-turbo-instruct", "prompt": "Say hi", "max_tokens": 16},
            request_only=True,
        )
    ]
)
class CompletionRequestSerializer(serializers.Serializer):
    """The OpenAI completions parameters, strictly typed; unknown fields are refused."""

    model = IdentifierField(
        param="model", max_length=300, help_text="Model in provider/model format"
    )
    prompt = PromptField(help_text="Prompt input: a string or an array of strings")
    fallbacks = serializers.ListField(
        child=IdentifierField(param="fallbacks", max_length=300), required=False, allow_null=True
    )
    stream = StrictBooleanField(required=False, allow_null=True)
    best_of = StrictIntegerField(required=False, allow_null=True, min_value=0, max_value=20)
    echo = StrictBooleanField(required=False, allow_null=True)
    frequency_penalty = StrictNumberField(
        required=False, allow_null=True, min_value=-2, max_value=2
    )
    logit_bias = LogitBiasField(required=False, allow_null=True)
    logprobs = StrictIntegerField(required=False, allow_null=True, min_value=0, max_value=5)
    max_tokens = StrictIntegerField(
        required=False, allow_null=True, min_value=0, max_value=10_000_000
    )
    n = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=128)
    presence_penalty = StrictNumberField(required=False, allow_null=True, min_value=-2, max_value=2)
    seed = StrictIntegerField(
        required=False, allow_null=True, min_value=-INT64_MAX - 1, max_value=INT64_MAX
    )
    stop = StopField(required=False, allow_null=True)
    suffix = StrictStringField(
        required=False, allow_null=True, allow_blank=True, trim_whitespace=False, max_length=100_000
    )
    temperature = StrictNumberField(required=False, allow_null=True, min_value=0, max_value=2)
    top_p = StrictNumberField(required=False, allow_null=True, min_value=0, max_value=1)
    user = StrictStringField(required=False, allow_null=True, allow_blank=True, max_length=256)

    def get_fields(self) -> dict[str, serializers.Field]:
        """The fields a request carries, and the required ones; every field without data.

        Two costs of DRF's default matter on the submit path: it rebuilds every declared field
        and its validators for each request, and it runs every absent optional field only to
        skip it. These fields keep no state until bound, so a shallow copy is enough; and none
        has a default, so an absent optional field has nothing to validate.
        """
        declared = self._declared_fields
        data = getattr(self, "initial_data", None)
        if isinstance(data, dict):
            names = [name for name, field in declared.items() if name in data or field.required]
        else:
            names = list(declared)
        return {name: copy.copy(declared[name]) for name in names}

    def run_validation(self, data: Any = serializers.empty) -> Any:
        if data is None or data is serializers.empty:
            raise InvalidRequest("Request body must be a JSON object.", code="invalid_body")
        return super().run_validation(data)

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise InvalidRequest("Request body must be a JSON object.", code="invalid_body")
        unknown = sorted(set(data) - set(self._declared_fields))
        if unknown:
            raise InvalidRequest(
                f"Unrecognized request argument: {unknown[0]}.",
                param=unknown[0],
                code="unknown_parameter",
            )
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return resolve_request(attrs, self.context["principal"])


def resolve_request(attrs: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """The checks across fields, and the targets: ``primary``, ``fallbacks`` and ``params``.

    ``attrs`` are the fields' validated values, as DRF gives them to ``validate``.
    """
    attrs = {name: value for name, value in attrs.items() if value is not None}
    if attrs.get("stream"):
        raise InvalidRequest(
            "Streaming is not supported for async requests.",
            param="stream",
            code="streaming_not_supported",
        )
    attrs.pop("stream", None)
    if "best_of" in attrs and attrs["best_of"] < attrs.get("n", 1):
        raise InvalidRequest("best_of must be greater than or equal to n.", param="best_of")
    prompts = attrs["prompt"] if isinstance(attrs["prompt"], list) else [attrs["prompt"]]
    choices = len(prompts) * max(attrs.get("n", 1), attrs.get("best_of", 1))
    if choices > settings.GATEWAY_MAX_CHOICES:
        # Providers without batching (Anthropic) make one call per choice.
        raise InvalidRequest(
            "the number of prompts times n (or best_of) may be at most "
            f"{settings.GATEWAY_MAX_CHOICES}.",
            param="n",
            code="too_many_choices",
        )
    fallbacks = attrs.pop("fallbacks", [])
    if len(fallbacks) > settings.GATEWAY_MAX_FALLBACKS:
        raise InvalidRequest(
            f"At most {settings.GATEWAY_MAX_FALLBACKS} fallbacks are accepted.",
            param="fallbacks",
            code="too_many_fallbacks",
        )
    primary = _target(attrs.pop("model"), "model")
    targets = [primary] + [_target(value, "fallbacks") for value in fallbacks]
    for target, param in zip(targets, ["model"] + ["fallbacks"] * len(fallbacks), strict=True):
        if not principal.may_use(str(target)):
            raise Forbidden(
                f"This key may not use {target}.", param=param, code="model_not_allowed"
            )
    return {"primary": primary, "fallbacks": [str(t) for t in targets[1:]], "params": attrs}


def rfc3339(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


class AsyncJobSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=JobStatus.choices)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    status_code = serializers.IntegerField(allow_null=True)
    result = serializers.JSONField(allow_null=True, help_text="An OpenAI text_completion object.")
    error = ErrorSerializer(allow_null=True)

    @staticmethod
    def render(job: AsyncJob | PolledJob) -> dict[str, Any]:
        return {
            "id": str(job.id),
            "status": job.status,
            "created_at": rfc3339(job.created_at),
            "expires_at": rfc3339(job.expires_at),
            "completed_at": rfc3339(job.completed_at),
            "status_code": job.status_code,
            "result": job.result,
            "error": job.error,
        }
