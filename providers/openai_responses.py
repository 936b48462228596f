"""The OpenAI Responses protocol, spoken by OpenAI and by compatible servers (vLLM, Ollama, ...).

The request is forwarded as the caller wrote it. The reply is normalised so the job's result
always parses as the official SDK's ``Response``: the fields OpenAI always sends and lenient
servers omit are filled in, the output items a caller acts on (messages, function calls,
reasoning) are completed, and values the SDK would reject are dropped rather than passed on.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from providers.errors import invalid_reply
from providers.openai_protocol import (
    OpenAIEndpoint,
    counts,
    has_fields,
    integer,
    non_empty_str,
    number,
    one_of,
    timestamp,
)

STATUSES = frozenset({"completed", "failed", "in_progress", "cancelled", "queued", "incomplete"})
ITEM_STATUSES = frozenset({"in_progress", "completed", "incomplete"})
TOOL_CHOICES = frozenset({"none", "auto", "required"})
SERVICE_TIERS = frozenset({"auto", "default", "flex", "scale", "priority"})
INCOMPLETE_REASONS = frozenset({"max_output_tokens", "content_filter"})
ERROR_CODES = frozenset({"server_error", "rate_limit_exceeded", "invalid_prompt"})
ANNOTATION_TYPES = frozenset(
    {"file_citation", "url_citation", "container_file_citation", "file_path"}
)

# Output items passed on as the provider sent them: OpenAI's own tool calls, which compatible
# servers do not make up. An item of a type the SDK does not know is dropped.
PASSED_ITEMS = frozenset(
    {
        "file_search_call",
        "function_call_output",
        "web_search_call",
        "computer_call",
        "computer_call_output",
        "image_generation_call",
        "code_interpreter_call",
        "local_shell_call",
        "local_shell_call_output",
        "shell_call",
        "shell_call_output",
        "apply_patch_call",
        "apply_patch_call_output",
        "mcp_call",
        "mcp_list_tools",
        "mcp_approval_request",
        "mcp_approval_response",
        "custom_tool_call",
        "custom_tool_call_output",
    }
)

_OPTIONAL_STRINGS = ("instructions", "previous_response_id", "user", "safety_identifier")
_OPTIONAL_NUMBERS = ("temperature", "top_p", "completed_at")
_OPTIONAL_INTEGERS = ("max_output_tokens", "max_tool_calls", "top_logprobs")


def normalise_response(payload: dict[str, Any], requested_model: str) -> dict[str, Any]:
    """A ``response`` dict the SDK accepts, filling what lenient servers leave out."""
    output = payload.get("output")
    if not isinstance(output, list):
        raise invalid_reply("upstream reply has no 'output' list")
    items = [_item(item, position) for position, item in enumerate(output)]
    tool_choice = payload.get("tool_choice")
    result: dict[str, Any] = {
        "id": non_empty_str(payload.get("id")) or f"resp_{uuid.uuid4().hex}",
        "object": "response",
        "created_at": timestamp(payload.get("created_at")),
        "model": non_empty_str(payload.get("model")) or requested_model,
        "status": one_of(payload.get("status"), STATUSES, "completed"),
        "output": [item for item in items if item is not None],
        # OpenAI's defaults, which is what a server that does not say applied.
        "parallel_tool_calls": _bool(payload.get("parallel_tool_calls"), default=True),
        "tool_choice": tool_choice
        if has_fields(tool_choice, type=str)
        else one_of(tool_choice, TOOL_CHOICES, "auto"),
        "tools": [tool for tool in _list(payload.get("tools")) if has_fields(tool, type=str)],
    }
    result.update(_optional_fields(payload))
    return result


def _optional_fields(payload: dict[str, Any]) -> dict[str, Any]:
    """What the provider sent of the SDK's optional fields, where the SDK would accept it."""
    fields: dict[str, Any] = {}
    for name in _OPTIONAL_STRINGS:
        if isinstance(payload.get(name), str):
            fields[name] = payload[name]
    for name in _OPTIONAL_NUMBERS:
        if number(payload.get(name)) is not None:
            fields[name] = payload[name]
    for name in _OPTIONAL_INTEGERS:
        if integer(payload.get(name)) is not None:
            fields[name] = payload[name]
    if isinstance(payload.get("background"), bool):
        fields["background"] = payload["background"]
    metadata = payload.get("metadata")
    if isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values()):
        fields["metadata"] = metadata
    if payload.get("truncation") in ("auto", "disabled"):
        fields["truncation"] = payload["truncation"]
    if payload.get("service_tier") in SERVICE_TIERS:
        fields["service_tier"] = payload["service_tier"]
    incomplete = payload.get("incomplete_details")
    if isinstance(incomplete, dict) and incomplete.get("reason") in INCOMPLETE_REASONS:
        fields["incomplete_details"] = {"reason": incomplete["reason"]}
    error = payload.get("error")
    if has_fields(error, message=str):
        # The SDK knows a fixed list of codes; one it does not know is still a server's error.
        code = one_of(error.get("code"), ERROR_CODES, "server_error")
        fields["error"] = {"code": code, "message": error["message"]}
    usage = _usage(payload.get("usage"))
    if usage is not None:
        fields["usage"] = usage
    return fields


def _item(item: object, position: int) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        raise invalid_reply(f"upstream output item {position} is not an object")
    kind = item.get("type")
    if kind == "message":
        return _message(item)
    if kind == "function_call":
        return _function_call(item, position)
    if kind == "reasoning":
        return _reasoning(item)
    return item if kind in PASSED_ITEMS else None


def _message(item: dict[str, Any]) -> dict[str, Any]:
    content = item.get("content")
    if isinstance(content, str):  # the shape of an input message, which some servers echo
        content = [{"type": "output_text", "text": content}]
    parts = [_part(part) for part in _list(content)]
    return {
        "type": "message",
        "id": non_empty_str(item.get("id")) or f"msg_{uuid.uuid4().hex}",
        "role": "assistant",
        "status": one_of(item.get("status"), ITEM_STATUSES, "completed"),
        "content": [part for part in parts if part is not None],
    }


def _part(part: object) -> dict[str, Any] | None:
    if has_fields(part, refusal=str) and part.get("type") == "refusal":
        return {"type": "refusal", "refusal": part["refusal"]}
    if not has_fields(part, text=str) or part.get("type") not in ("output_text", "text"):
        return None
    result: dict[str, Any] = {
        "type": "output_text",
        "text": part["text"],
        "annotations": [
            annotation
            for annotation in _list(part.get("annotations"))
            if isinstance(annotation, dict) and annotation.get("type") in ANNOTATION_TYPES
        ],
    }
    logprobs = part.get("logprobs")
    if isinstance(logprobs, list) and all(_is_token_logprob(entry) for entry in logprobs):
        result["logprobs"] = logprobs
    return result


def _is_token_logprob(entry: object) -> bool:
    return has_fields(entry, token=str, logprob=float, bytes=list, top_logprobs=list) and all(
        has_fields(top, token=str, logprob=float, bytes=list) for top in entry["top_logprobs"]
    )


def _function_call(item: dict[str, Any], position: int) -> dict[str, Any]:
    name = non_empty_str(item.get("name"))
    if name is None:
        raise invalid_reply(f"upstream output item {position} is a function call without a name")
    arguments = item.get("arguments")
    if not isinstance(arguments, str):
        # Some servers send the arguments as an object; OpenAI sends them as JSON text.
        arguments = json.dumps({} if arguments is None else arguments)
    item_id = non_empty_str(item.get("id"))
    # The call id is how the caller answers the call in its next request: one is always needed.
    call_id = non_empty_str(item.get("call_id")) or item_id or f"call_{uuid.uuid4().hex[:24]}"
    result = {"type": "function_call", "name": name, "arguments": arguments, "call_id": call_id}
    if item_id is not None:
        result["id"] = item_id
    if item.get("status") in ITEM_STATUSES:
        result["status"] = item["status"]
    return result


def _reasoning(item: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "type": "reasoning",
        "id": non_empty_str(item.get("id")) or f"rs_{uuid.uuid4().hex}",
        "summary": _texts(item.get("summary"), "summary_text"),
    }
    content = _texts(item.get("content"), "reasoning_text")
    if content:
        result["content"] = content
    if isinstance(item.get("encrypted_content"), str):
        result["encrypted_content"] = item["encrypted_content"]
    if item.get("status") in ITEM_STATUSES:
        result["status"] = item["status"]
    return result


def _texts(parts: object, kind: str) -> list[dict[str, str]]:
    return [
        {"type": kind, "text": part["text"]}
        for part in _list(parts)
        if has_fields(part, text=str) and part.get("type", kind) == kind
    ]


def _usage(usage: object) -> dict[str, Any] | None:
    if not isinstance(usage, dict):
        return None
    prompt, output = integer(usage.get("input_tokens")), integer(usage.get("output_tokens"))
    if prompt is None or output is None:
        return None
    total = integer(usage.get("total_tokens"))
    cached = counts(usage.get("input_tokens_details"))
    reasoning = counts(usage.get("output_tokens_details"))
    return {
        "input_tokens": prompt,
        "output_tokens": output,
        "total_tokens": prompt + output if total is None else total,
        "input_tokens_details": {
            "cached_tokens": cached.get("cached_tokens", 0),
            "cache_write_tokens": cached.get("cache_write_tokens", 0),
        },
        "output_tokens_details": {"reasoning_tokens": reasoning.get("reasoning_tokens", 0)},
    }


def _bool(value: object, *, default: bool) -> bool:
    return value if isinstance(value, bool) else default


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


class OpenAIResponses(OpenAIEndpoint):
    """``POST {base_url}/responses``; ``base_url`` already ends in the API version (``/v1``)."""

    path = "responses"
    normalise = staticmethod(normalise_response)
