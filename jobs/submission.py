"""What a submit must pass before a job is written: its schema, then the checks across fields,
the key's allow-list and what each target's provider can serve."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from gateway.access.principals import Principal
from gateway.http.errors import Forbidden, InvalidRequest
from jobs.request_types import RequestKind
from jobs.schemas.base import GATEWAY_FIELDS, RequestBody, parse_request
from providers import registry
from providers.base import Adapter, Target


@dataclass(frozen=True)
class Submission:
    """A valid request: where to send it first, where next, and what to send."""

    primary: Target
    fallbacks: list[str]
    params: dict[str, Any]


def read_submission(kind: RequestKind, data: Any, principal: Principal) -> Submission:
    """The submission in ``data``; an InvalidRequest (400) or Forbidden (403) naming the param
    if it is not one this caller may make."""
    body = parse_request(kind.schema, data)
    calls = body.upstream_calls()
    if calls > settings.GATEWAY_MAX_CHOICES:
        # Providers without batching (Anthropic) make one call per choice.
        raise InvalidRequest(
            f"This request asks for {calls} choices in one job (prompts times n or best_of); "
            f"at most {settings.GATEWAY_MAX_CHOICES} are accepted.",
            param="n",
            code="too_many_choices",
        )
    fallbacks = body.fallbacks or []
    if len(fallbacks) > settings.GATEWAY_MAX_FALLBACKS:
        raise InvalidRequest(
            f"At most {settings.GATEWAY_MAX_FALLBACKS} fallbacks are accepted.",
            param="fallbacks",
            code="too_many_fallbacks",
        )
    # Passed upstream as the client sent it (the schema is strict, so nothing was coerced);
    # a null means "the default", which some compatible servers refuse instead.
    params = {
        name: value
        for name, value in data.items()
        if value is not None and name not in GATEWAY_FIELDS
    }
    named = [(body.model, "model")] + [
        (value, f"fallbacks[{position}]") for position, value in enumerate(fallbacks)
    ]
    resolved = [_target(kind, value, param, principal, params) for value, param in named]
    _check_job_bounds(body, [adapter for _, adapter in resolved])
    targets = [target for target, _ in resolved]
    return Submission(targets[0], [str(target) for target in targets[1:]], params)


# The parameters that bound one answer's tokens, in each request type's schema.
TOKEN_PARAMS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def _check_job_bounds(body: RequestBody, adapters: list[Adapter]) -> None:
    """What one job may cost upstream at most (GATEWAY_MAX_TOKENS_PER_JOB, and
    GATEWAY_MAX_UPSTREAM_CALLS_PER_JOB over every target's tries); over it, a 400 naming the
    param."""
    fields = type(body).model_fields  # a miss on the model itself raises, which costs more
    for name in TOKEN_PARAMS:
        asked = getattr(body, name) if name in fields else None
        if isinstance(asked, int) and asked > settings.GATEWAY_MAX_TOKENS_PER_JOB:
            raise InvalidRequest(
                f"{name} is {asked}; this gateway accepts at most "
                f"{settings.GATEWAY_MAX_TOKENS_PER_JOB} tokens per answer.",
                param=name,
                code="max_tokens_too_large",
            )
    choices = body.upstream_calls()
    tries = 1 + settings.GATEWAY_RETRIES
    calls = sum((choices if adapter.fans_out else 1) * tries for adapter in adapters)
    if calls > settings.GATEWAY_MAX_UPSTREAM_CALLS_PER_JOB:
        fans_out = choices > 1 and any(adapter.fans_out for adapter in adapters)
        raise InvalidRequest(
            f"This job could make {calls} upstream calls ({tries} tries per target, one call "
            "per prompt and choice on providers that take one per call); at most "
            f"{settings.GATEWAY_MAX_UPSTREAM_CALLS_PER_JOB} are accepted.",
            param="n" if fans_out else "fallbacks",
            code="too_many_upstream_calls",
        )


def _target(
    kind: RequestKind, value: str, param: str, principal: Principal, params: dict[str, Any]
) -> tuple[Target, Adapter]:
    target = Target.parse(value)
    if not target.provider or not target.model:
        raise InvalidRequest(
            f"{param} must be in provider/model format, got {value!r}.",
            param=param,
            code="invalid_model",
        )
    provider = registry.get_provider(target.provider)
    if provider is None:
        raise InvalidRequest(
            f"Provider {target.provider!r} is not configured on this gateway.",
            param=param,
            code="unknown_provider",
        )
    if not principal.may_use(str(target)):
        raise Forbidden(f"This key may not use {target}.", param=param, code="model_not_allowed")
    adapter = kind.adapters.get(provider.protocol)
    if adapter is None:
        raise InvalidRequest(
            f"Provider {target.provider!r} ({provider.protocol} protocol) cannot serve "
            f"{kind.title} requests.",
            param=param,
            code="unsupported_request_type",
        )
    refusal = adapter.refusal(params)
    if refusal is not None:
        raise InvalidRequest(
            f"{target}: {refusal.message}", param=refusal.param or param, code=refusal.code
        )
    return target, adapter
