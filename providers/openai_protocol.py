"""What every OpenAI-protocol adapter shares: the call itself, and readers for loose replies.

Each adapter (completions, chat, responses, embeddings) posts its params to one path under a
``base_url`` that already ends in the API version (``/v1``), and then fills in what lenient
compatible servers leave out. The call and the value readers live here once.
"""

from __future__ import annotations

import json
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from typing import Any, ClassVar, TypeGuard

from providers.base import Credentials, ProviderError
from providers.errors import error_from_transport, invalid_reply, json_object_from_reply
from providers.transport import Timeouts, Transport, TransportError

# Gateway-level fields that must never reach a provider: fallbacks are ours, and the reply is
# read as one JSON document, so a streamed answer would be unreadable.
NOT_FORWARDED = frozenset({"model", "fallbacks", "stream"})


async def post_json(
    transport: Transport,
    credentials: Credentials,
    path: str,
    model: str,
    params: dict[str, Any],
    timeouts: Timeouts,
) -> dict[str, Any]:
    """POST ``params`` (as the request body, with ``model``) to ``{base_url}/{path}``; the JSON
    object of the reply, or the ``ProviderError`` that explains why there is none."""
    # Null means "the default" in the OpenAI API; some compatible servers reject it instead.
    body = {k: v for k, v in params.items() if k not in NOT_FORWARDED and v is not None}
    body["model"] = model
    try:
        response = await transport.post(
            f"{credentials.base_url.rstrip('/')}/{path}",
            headers=request_headers(credentials),
            body=json.dumps(body).encode(),
            timeouts=timeouts,
        )
    except TransportError as exc:
        raise error_from_transport(exc) from exc
    return json_object_from_reply(response, credentials)


class OpenAIEndpoint(ABC):
    """An adapter for a request type the OpenAI protocol carries as it is: the params go whole to
    ``{base_url}/{path}``, and the reply is normalised so the SDK's type of the result accepts
    it. A subclass names its ``path`` and its ``normalise(payload, requested_model)``."""

    path: ClassVar[str]
    fans_out = False  # every prompt and choice travel in one call

    def refusal(self, params: dict[str, Any]) -> ProviderError | None:
        return None  # the request is written in this protocol: anything it says can be sent

    async def serve(
        self,
        transport: Transport,
        credentials: Credentials,
        model: str,
        params: dict[str, Any],
        timeouts: Timeouts,
    ) -> dict[str, Any]:
        payload = await post_json(transport, credentials, self.path, model, params, timeouts)
        return self.normalise(payload, model)

    @staticmethod
    @abstractmethod
    def normalise(payload: dict[str, Any], requested_model: str) -> dict[str, Any]:
        """The reply as the SDK's type of this request's result accepts it."""


def choices_reply(
    payload: dict[str, Any],
    requested_model: str,
    *,
    kind: str,
    id_prefix: str,
    choice: Callable[[object, int], dict[str, Any]],
) -> dict[str, Any]:
    """The envelope completions and chat completions share, as the SDK accepts it: an id, the
    ``object`` kind, a timestamp and the model where a lenient server left them out, the
    choices read by ``choice(value, position)``, usage and system fingerprint when given."""
    choices = payload.get("choices")
    if not isinstance(choices, list):
        raise invalid_reply("upstream reply has no 'choices' list")
    result: dict[str, Any] = {
        "id": non_empty_str(payload.get("id")) or f"{id_prefix}-{uuid.uuid4().hex}",
        "object": kind,
        "created": timestamp(payload.get("created")),
        "model": non_empty_str(payload.get("model")) or requested_model,
        "choices": [choice(value, position) for position, value in enumerate(choices)],
    }
    usage = completion_usage(payload.get("usage"))
    if usage is not None:
        result["usage"] = usage
    fingerprint = non_empty_str(payload.get("system_fingerprint"))
    if fingerprint is not None:
        result["system_fingerprint"] = fingerprint
    return result


def request_headers(credentials: Credentials) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    # Local servers (Ollama, vLLM without --api-key) take no key; an empty bearer would be odd.
    if credentials.api_key:
        headers["Authorization"] = f"Bearer {credentials.api_key}"
    return headers


def completion_usage(usage: object) -> dict[str, Any] | None:
    """The SDK's ``CompletionUsage`` (completions and chat), or None when the counts are absent."""
    if not isinstance(usage, dict):
        return None
    prompt = integer(usage.get("prompt_tokens"))
    completion = integer(usage.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    total = integer(usage.get("total_tokens"))
    result: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion if total is None else total,
    }
    for name in ("prompt_tokens_details", "completion_tokens_details"):
        details = counts(usage.get(name))
        if details:
            result[name] = details
    return result


def counts(value: object) -> dict[str, int]:
    """The integer entries of a usage-details object; anything else in it is dropped."""
    if not isinstance(value, dict):
        return {}
    return {
        name: count
        for name, count in value.items()
        if isinstance(name, str) and integer(count) is not None
    }


def has_fields(value: object, **types: type) -> TypeGuard[dict[str, Any]]:
    """``value`` is an object whose named fields hold the given types (an int counts as a float,
    a bool as neither)."""
    if not isinstance(value, dict):
        return False
    for name, kind in types.items():
        field = value.get(name)
        accepted = (int, float) if kind is float else (kind,)
        if isinstance(field, bool) or not isinstance(field, accepted):
            return False
    return True


def one_of(value: object, allowed: Collection[str], default: str) -> str:
    return value if isinstance(value, str) and value in allowed else default


def timestamp(value: object) -> int:
    """Seconds since the epoch as the provider sent them, or now when it sent none."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return int(value)
    return int(time.time())


def non_empty_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def integer(value: object) -> int | None:
    # bool is an int to Python, never a token count to a provider.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def number(value: object) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None
