"""The OpenAI completions protocol, spoken by OpenAI and every OpenAI-compatible server.

vLLM, Ollama, Groq, Together, OpenRouter, Mistral and others answer the same request, but not
always with the same care: ids, timestamps, finish reasons and usage are normalised here so the
job's result always parses as the official SDK's ``Completion``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from providers.base import Credentials
from providers.errors import error_from_transport, invalid_reply, json_object_from_reply
from providers.transport import Timeouts, Transport, TransportError

FINISH_REASONS = frozenset({"stop", "length", "content_filter"})

# Gateway-level fields that must never reach a provider: fallbacks are ours, and the reply is
# read as one JSON document, so a streamed answer would be unreadable.
_NOT_FORWARDED = frozenset({"model", "fallbacks", "stream"})


class OpenAICompletions:
    """``POST {base_url}/completions``; ``base_url`` already ends in the API version (``/v1``)."""

    async def complete(
        self,
        transport: Transport,
        credentials: Credentials,
        model: str,
        params: dict[str, Any],
        timeouts: Timeouts,
    ) -> dict[str, Any]:
        # Null means "the default" in the OpenAI API; some compatible servers reject it instead.
        body = {k: v for k, v in params.items() if k not in _NOT_FORWARDED and v is not None}
        body["model"] = model
        try:
            response = await transport.post(
                f"{credentials.base_url.rstrip('/')}/completions",
                headers=request_headers(credentials),
                body=json.dumps(body).encode(),
                timeouts=timeouts,
            )
        except TransportError as exc:
            raise error_from_transport(exc) from exc
        return normalise_completion(json_object_from_reply(response, credentials), model)


def request_headers(credentials: Credentials) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    # Local servers (Ollama, vLLM without --api-key) take no key; an empty bearer would be odd.
    if credentials.api_key:
        headers["Authorization"] = f"Bearer {credentials.api_key}"
    return headers


def normalise_completion(payload: dict[str, Any], requested_model: str) -> dict[str, Any]:
    """A ``text_completion`` dict the SDK accepts, filling what lenient servers leave out."""
    choices = payload.get("choices")
    if not isinstance(choices, list):
        raise invalid_reply("upstream reply has no 'choices' list")
    result: dict[str, Any] = {
        "id": _non_empty_str(payload.get("id")) or f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": _timestamp(payload.get("created")),
        "model": _non_empty_str(payload.get("model")) or requested_model,
        "choices": [_choice(choice, position) for position, choice in enumerate(choices)],
    }
    usage = _usage(payload.get("usage"))
    if usage is not None:
        result["usage"] = usage
    fingerprint = _non_empty_str(payload.get("system_fingerprint"))
    if fingerprint is not None:
        result["system_fingerprint"] = fingerprint
    return result


def finish_reason(value: object) -> str:
    # The SDK accepts only three values; servers also send null, "eos" or "abort", and a
    # completion that ended for any reason but length or filtering simply stopped.
    return value if isinstance(value, str) and value in FINISH_REASONS else "stop"


def _choice(choice: object, position: int) -> dict[str, Any]:
    if not isinstance(choice, dict):
        raise invalid_reply(f"upstream choice {position} is not an object")
    text = choice.get("text")
    if text is None:  # a filtered choice may come back with a null text
        text = ""
    if not isinstance(text, str):
        raise invalid_reply(f"upstream choice {position} has a 'text' that is not a string")
    index = _int(choice.get("index"))
    logprobs = choice.get("logprobs")
    return {
        "text": text,
        "index": position if index is None else index,
        "logprobs": logprobs if isinstance(logprobs, dict) else None,
        "finish_reason": finish_reason(choice.get("finish_reason")),
    }


def _usage(usage: object) -> dict[str, int] | None:
    if not isinstance(usage, dict):
        return None
    prompt, completion = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    total = _int(usage.get("total_tokens"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion if total is None else total,
    }


def _timestamp(value: object) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return int(value)
    return int(time.time())


def _non_empty_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: object) -> int | None:
    # bool is an int to Python, never a token count to a provider.
    return value if isinstance(value, int) and not isinstance(value, bool) else None
