"""The OpenAI chat completions protocol, spoken by OpenAI and every OpenAI-compatible server.

The request is forwarded as the caller wrote it (messages, tools, response_format and the rest
pass whole). The reply is normalised so the job's result always parses as the official SDK's
``ChatCompletion``: what a lenient server leaves out is filled in, a value the SDK would reject
is replaced by its nearest meaning, and everything else the provider sent is kept.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from providers.errors import invalid_reply
from providers.openai_protocol import (
    OpenAIEndpoint,
    choices_reply,
    has_fields,
    integer,
    non_empty_str,
    one_of,
)

FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})
SERVICE_TIERS = frozenset({"auto", "default", "flex", "scale", "priority"})


def normalise_chat_completion(payload: dict[str, Any], requested_model: str) -> dict[str, Any]:
    """A ``chat.completion`` dict the SDK accepts, filling what lenient servers leave out."""
    result = choices_reply(
        payload, requested_model, kind="chat.completion", id_prefix="chatcmpl", choice=_choice
    )
    tier = payload.get("service_tier")
    if isinstance(tier, str) and tier in SERVICE_TIERS:
        result["service_tier"] = tier
    return result


def _choice(choice: object, position: int) -> dict[str, Any]:
    if not isinstance(choice, dict):
        raise invalid_reply(f"upstream choice {position} is not an object")
    message = _message(choice.get("message"), position)
    index = integer(choice.get("index"))
    # Servers also send null, "eos" or "abort": a reply that called tools ended to let them run,
    # and any other simply stopped.
    ended = "tool_calls" if message.get("tool_calls") else "stop"
    result = {
        "index": position if index is None else index,
        "message": message,
        "finish_reason": one_of(choice.get("finish_reason"), FINISH_REASONS, ended),
        "logprobs": _logprobs(choice.get("logprobs")),
    }
    return result


def _message(message: object, position: int) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise invalid_reply(f"upstream choice {position} has no 'message' object")
    result: dict[str, Any] = {
        "role": "assistant",
        "content": _content(message.get("content"), position),
        "refusal": non_empty_str(message.get("refusal")),
    }
    tool_calls = message.get("tool_calls")
    if isinstance(tool_calls, list) and tool_calls:
        result["tool_calls"] = [_tool_call(call, position) for call in tool_calls]
    function_call = _function(message.get("function_call"))
    if function_call is not None:
        result["function_call"] = function_call
    annotations = [a for a in _list(message.get("annotations")) if _is_url_citation(a)]
    if annotations:
        result["annotations"] = annotations
    audio = message.get("audio")
    if has_fields(audio, id=str, data=str, transcript=str, expires_at=int):
        result["audio"] = audio
    return result


def _content(content: object, position: int) -> str | None:
    if content is None or isinstance(content, str):
        return content
    # Some servers answer in content parts, as requests may be written; the SDK wants the text.
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    raise invalid_reply(f"upstream choice {position} has a 'content' that is not text")


def _tool_call(call: object, position: int) -> dict[str, Any]:
    if not isinstance(call, dict):
        raise invalid_reply(f"upstream choice {position} has a tool call that is not an object")
    custom = call.get("custom")
    if call.get("type") == "custom" and has_fields(custom, name=str, input=str):
        return {"id": _call_id(call), "type": "custom", "custom": custom}
    function = _function(call.get("function"))
    if function is None:
        raise invalid_reply(f"upstream choice {position} has a tool call without a function")
    return {"id": _call_id(call), "type": "function", "function": function}


def _function(function: object) -> dict[str, str] | None:
    if not isinstance(function, dict) or not non_empty_str(function.get("name")):
        return None
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        # Ollama and others send the arguments as an object; OpenAI sends them as JSON text.
        arguments = json.dumps({} if arguments is None else arguments)
    return {"name": function["name"], "arguments": arguments}


def _call_id(call: dict[str, Any]) -> str:
    # The id is how the caller answers the call in its next request, so one is always needed.
    return non_empty_str(call.get("id")) or f"call_{uuid.uuid4().hex[:24]}"


def _logprobs(logprobs: object) -> dict[str, Any] | None:
    """Token log probabilities as the SDK reads them, or None when any entry is unreadable:
    a partial list would misstate which tokens were likely."""
    if not isinstance(logprobs, dict):
        return None
    result: dict[str, Any] = {}
    for name in ("content", "refusal"):
        tokens = logprobs.get(name)
        if tokens is None:
            continue
        if not isinstance(tokens, list):
            return None
        entries = [_token_logprob(token) for token in tokens]
        if None in entries:
            return None
        result[name] = entries
    return result or None


def _token_logprob(token: object, *, top: bool = False) -> dict[str, Any] | None:
    if not has_fields(token, token=str, logprob=float):
        return None
    raw_bytes = token.get("bytes")
    entry: dict[str, Any] = {
        "token": token["token"],
        "logprob": token["logprob"],
        "bytes": raw_bytes
        if isinstance(raw_bytes, list) and all(integer(b) is not None for b in raw_bytes)
        else None,
    }
    if top:
        return entry
    alternatives = [_token_logprob(t, top=True) for t in _list(token.get("top_logprobs"))]
    entry["top_logprobs"] = [t for t in alternatives if t is not None]
    return entry


def _is_url_citation(annotation: object) -> bool:
    return (
        isinstance(annotation, dict)
        and annotation.get("type") == "url_citation"
        and has_fields(
            annotation.get("url_citation"), start_index=int, end_index=int, title=str, url=str
        )
    )


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


class OpenAIChatCompletions(OpenAIEndpoint):
    """``POST {base_url}/chat/completions``; ``base_url`` already ends in ``/v1``."""

    path = "chat/completions"
    normalise = staticmethod(normalise_chat_completion)
