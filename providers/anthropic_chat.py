"""An OpenAI chat completion served by the Anthropic Messages API.

The request, OpenAI -> Anthropic:

===================================  ===========================================================
OpenAI                               Anthropic
===================================  ===========================================================
system and developer messages        ``system``: one text block per text, in order
user and assistant messages          ``messages``; consecutive ones of one role merged, since
                                     Anthropic requires the roles to alternate
tool messages                        ``tool_result`` blocks of a user message
                                     (``tool_call_id`` -> ``tool_use_id``)
text part, assistant refusal part    ``text`` block
image_url part                       ``image`` block: a ``data:`` URL as a base64 source, an
                                     http(s) URL as a url source
file part with PDF ``file_data``     ``document`` block with a base64 source
assistant ``tool_calls``             ``tool_use`` blocks, arguments parsed into an object
``tools`` (function)                 ``tools``: name, description, input_schema
``tool_choice`` auto/none/required   ``tool_choice`` auto/none/any
``tool_choice`` a named function     ``tool_choice`` {"type": "tool", "name": ...}
``parallel_tool_calls: false``       ``tool_choice.disable_parallel_tool_use``
max_completion_tokens, max_tokens    ``max_tokens``; ``DEFAULT_MAX_TOKENS`` when neither is given
stop (a string or a list)            ``stop_sequences``
temperature, top_p                   the same, temperature capped at Anthropic's maximum of 1
user, else safety_identifier         ``metadata.user_id``
n                                    n calls at once, one choice each
===================================  ===========================================================

Left out because they do not change the answer: ``metadata`` and ``store`` (OpenAI's own stored
completions), ``service_tier`` and ``prompt_cache_key`` (price, latency and caching),
``seed`` (OpenAI promises no more than best-effort repeatability, and only on its own models),
a message's ``name``, an image's ``detail``, a file's ``filename``, ``stream_options``, and the
parameters in ``_ABSENT_UNLESS`` at their "off" values (``logprobs: false``, penalties of 0).

Refused by ``refusal`` because Anthropic would give a different answer, or less than was asked:
log probabilities, ``response_format`` other than text (no JSON mode in this API version),
audio in or out, ``prediction``, ``logit_bias``, non-zero penalties, ``reasoning_effort``,
``verbosity``, ``web_search_options``, the deprecated ``functions``, tools other than functions,
``strict`` tools, files other than PDF data, and images Anthropic cannot fetch or decode.

The reply, Anthropic -> OpenAI: text blocks joined -> ``message.content``; ``tool_use`` blocks ->
``message.tool_calls``; ``stop_reason`` -> ``finish_reason`` as in ``_FINISH_REASONS``; usage
summed over the n calls.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from providers.anthropic import all_or_nothing, messages_url, request_headers
from providers.base import Credentials, ProviderError
from providers.errors import error_from_transport, invalid_reply, json_object_from_reply
from providers.transport import Timeouts, Transport, TransportError

# OpenAI chat has no default limit but Anthropic insists on one: 4096 is the largest output that
# every Claude model accepts, so the default never makes a call fail on its own.
DEFAULT_MAX_TOKENS = 4096

# Parameters Anthropic has no equivalent for, accepted only at the values that mean "off" (an
# empty tuple: none), since any other value asks for something the answer would silently lack.
_ABSENT_UNLESS: dict[str, tuple[object, ...]] = {
    "logprobs": (False,),
    "top_logprobs": (),
    "logit_bias": ({},),
    "frequency_penalty": (0,),
    "presence_penalty": (0,),
    "audio": (),
    "prediction": (),
    "reasoning_effort": (),
    "verbosity": (),
    "web_search_options": (),
    "functions": (),
    "function_call": (),
}

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})

_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

_DATA_URL = re.compile(r"data:(?P<media_type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.+)", re.DOTALL)

_TOOL_CHOICES = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


@dataclass(frozen=True)
class _Reply:
    message_id: str | None
    model: str | None
    message: dict[str, Any]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


class AnthropicChatCompletions:
    """``POST {base_url}/v1/messages``; ``base_url`` is the host, e.g. ``https://api.anthropic.com``."""

    fans_out = True  # one Messages call per prompt and per choice

    def refusal(self, params: dict[str, Any]) -> ProviderError | None:
        """The first parameter Anthropic cannot honour faithfully, as a permanent error."""
        found = next(_unfaithful(params), None)
        return None if found is None else _unsupported(*found)

    async def serve(
        self,
        transport: Transport,
        credentials: Credentials,
        model: str,
        params: dict[str, Any],
        timeouts: Timeouts,
    ) -> dict[str, Any]:
        # Checked at submit time too; again here so nothing is spent on a request that would
        # come back without what was asked for.
        refused = self.refusal(params)
        if refused is not None:
            raise refused
        body = json.dumps(request_body(model, params)).encode()
        url, headers = messages_url(credentials.base_url), request_headers(credentials)
        replies = await all_or_nothing(
            [
                _call(transport, url, headers, body, credentials, timeouts)
                for _ in range(params.get("n") or 1)
            ]
        )
        return _chat_completion(replies, model)


# --- what Anthropic cannot do -------------------------------------------------------------------


def _unfaithful(params: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Each (param, reason) Anthropic cannot honour, in the order of the request."""
    for name, off_values in _ABSENT_UNLESS.items():
        value = params.get(name)
        if value is not None and value not in off_values:
            yield name, f"{name} is not supported by Anthropic models"
    response_format = params.get("response_format")
    if response_format is not None and response_format != {"type": "text"}:
        yield "response_format", "Anthropic models answer in text only"
    if "audio" in (params.get("modalities") or ()):
        yield "modalities", "Anthropic models do not produce audio"
    for index, tool in enumerate(params.get("tools") or ()):
        yield from _unfaithful_tool(f"tools[{index}]", tool)
    if not _is_translatable_tool_choice(params.get("tool_choice")):
        yield "tool_choice", "Anthropic models take tool_choice auto, none, required or a function"
    for index, message in enumerate(params.get("messages") or ()):
        yield from _unfaithful_message(f"messages[{index}]", message)


def _unfaithful_tool(path: str, tool: dict[str, Any]) -> Iterator[tuple[str, str]]:
    if tool.get("type") != "function":
        yield path, "Anthropic models take function tools only"
    elif (tool.get("function") or {}).get("strict"):
        yield f"{path}.function.strict", "Anthropic models cannot guarantee strict tool arguments"


def _is_translatable_tool_choice(choice: object) -> bool:
    if choice is None:
        return True
    if isinstance(choice, str):
        return choice in _TOOL_CHOICES
    return (
        isinstance(choice, dict)
        and choice.get("type") == "function"
        and isinstance((choice.get("function") or {}).get("name"), str)
    )


def _unfaithful_message(path: str, message: dict[str, Any]) -> Iterator[tuple[str, str]]:
    role = message.get("role")
    if role not in _ROLES:
        yield f"{path}.role", f"Anthropic models do not take {role!r} messages"
    for field in ("audio", "function_call"):
        if message.get(field) is not None:
            yield f"{path}.{field}", f"Anthropic models do not take an assistant's {field}"
    content = message.get("content")
    for index, part in enumerate(content if isinstance(content, list) else ()):
        reason = _unfaithful_part(part)
        if reason is not None:
            yield f"{path}.content[{index}]", reason
    for index, call in enumerate(message.get("tool_calls") or ()):
        if call.get("type") != "function":
            yield f"{path}.tool_calls[{index}]", "Anthropic models take function tool calls only"
        elif not isinstance(_arguments(call), dict):
            yield (
                f"{path}.tool_calls[{index}].function.arguments",
                "Anthropic models take tool call arguments that are a JSON object",
            )


def _unfaithful_part(part: dict[str, Any]) -> str | None:
    kind = part.get("type")
    if kind == "image_url":
        url = (part.get("image_url") or {}).get("url") or ""
        data_url = _DATA_URL.fullmatch(url)
        if data_url is not None and data_url["media_type"] in _IMAGE_TYPES:
            return None
        if data_url is None and url.startswith(("http://", "https://")):
            return None
        return "Anthropic models take JPEG, PNG, GIF or WebP images as base64 data or http(s) URLs"
    if kind == "file":
        data_url = _DATA_URL.fullmatch((part.get("file") or {}).get("file_data") or "")
        if data_url is not None and data_url["media_type"] == "application/pdf":
            return None
        return "Anthropic models take files as PDF file_data only"
    if kind in ("text", "refusal"):
        return None
    return f"Anthropic models do not take {kind} content"


# --- the request --------------------------------------------------------------------------------


def request_body(model: str, params: dict[str, Any]) -> dict[str, Any]:
    """The Messages request for a chat completion that ``refusal`` accepted."""
    messages = params.get("messages") or []
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": _max_tokens(params),
        "messages": _conversation(messages),
    }
    system = [
        block
        for message in messages
        if message.get("role") in ("system", "developer")
        for block in _blocks(message.get("content"))
    ]
    if system:
        body["system"] = system
    if params.get("tools"):
        body.update(_tools(params))
    body.update(_options(params))
    return body


def _max_tokens(params: dict[str, Any]) -> int:
    max_tokens = params.get("max_completion_tokens")
    if max_tokens is None:  # the older name, deprecated by OpenAI but still sent by many clients
        max_tokens = params.get("max_tokens")
    return DEFAULT_MAX_TOKENS if max_tokens is None else int(max_tokens)


def _options(params: dict[str, Any]) -> dict[str, Any]:
    """Sampling, stop sequences and the end user, for those the request gives."""
    options: dict[str, Any] = {}
    temperature = params.get("temperature")
    if temperature is not None:
        # OpenAI allows up to 2, Anthropic up to 1: the closest meaning is "as random as allowed".
        options["temperature"] = min(float(temperature), 1.0)
    if params.get("top_p") is not None:
        options["top_p"] = params["top_p"]
    stop = params.get("stop")
    if stop:
        options["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    user = params.get("user") or params.get("safety_identifier")
    if user:
        options["metadata"] = {"user_id": user}
    return options


def _conversation(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """User and assistant turns, tool results as user turns, neighbours of one role merged."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        turn = _turn(message)
        # Anthropic rejects an empty turn, and an empty message says nothing anyway.
        if turn is None or not turn[1]:
            continue
        role, blocks = turn
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _turn(message: dict[str, Any]) -> tuple[str, list[dict[str, Any]]] | None:
    """The role and content blocks a message adds to the conversation; None for system text."""
    role = message.get("role")
    if role == "user":
        return "user", _blocks(message.get("content"))
    if role == "assistant":
        calls = [_tool_use(call) for call in message.get("tool_calls") or ()]
        return "assistant", _blocks(message.get("content")) + calls
    if role == "tool":
        content = message.get("content")
        result = {
            "type": "tool_result",
            "tool_use_id": message.get("tool_call_id"),
            "content": content if isinstance(content, str) else _blocks(content),
        }
        return "user", [result]
    return None


def _blocks(content: str | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    blocks = [_block(part) for part in content or ()]
    # Anthropic rejects empty text blocks, which add nothing to the prompt.
    return [block for block in blocks if block.get("text") != ""]


def _block(part: dict[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    if kind == "image_url":
        return {"type": "image", "source": _source(part["image_url"]["url"])}
    if kind == "file":
        return {"type": "document", "source": _source(part["file"]["file_data"])}
    text = part.get("refusal") if kind == "refusal" else part.get("text")
    return {"type": "text", "text": text or ""}


def _source(url: str) -> dict[str, Any]:
    data_url = _DATA_URL.fullmatch(url)
    if data_url is None:
        return {"type": "url", "url": url}
    return {"type": "base64", "media_type": data_url["media_type"], "data": data_url["data"]}


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": call.get("id"),
        "name": call["function"]["name"],
        "input": _arguments(call),
    }


def _arguments(call: dict[str, Any]) -> object:
    """A tool call's arguments decoded, or None when they are not JSON."""
    try:
        return json.loads((call.get("function") or {}).get("arguments") or "{}")
    except (TypeError, ValueError):
        return None


def _tools(params: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {"tools": [_tool(tool["function"]) for tool in params["tools"]]}
    tool_choice = _tool_choice(params.get("tool_choice"), params.get("parallel_tool_calls"))
    if tool_choice is not None:
        fields["tool_choice"] = tool_choice
    return fields


def _tool(function: dict[str, Any]) -> dict[str, Any]:
    tool: dict[str, Any] = {
        "name": function["name"],
        # OpenAI lets a function without parameters take none; Anthropic needs the schema said.
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        tool["description"] = function["description"]
    return tool


def _tool_choice(choice: object, parallel_tool_calls: object) -> dict[str, Any] | None:
    if isinstance(choice, dict):
        translated = {"type": "tool", "name": choice["function"]["name"]}
    elif isinstance(choice, str):
        translated = dict(_TOOL_CHOICES[choice])
    elif parallel_tool_calls is False:
        translated = {"type": "auto"}  # OpenAI's default, said only to carry the flag below
    else:
        return None
    if parallel_tool_calls is False and translated["type"] != "none":
        translated["disable_parallel_tool_use"] = True
    return translated


# --- the calls ----------------------------------------------------------------------------------


async def _call(
    transport: Transport,
    url: str,
    headers: dict[str, str],
    body: bytes,
    credentials: Credentials,
    timeouts: Timeouts,
) -> _Reply:
    try:
        response = await transport.post(url, headers=headers, body=body, timeouts=timeouts)
    except TransportError as exc:
        raise error_from_transport(exc) from exc
    return _parse_reply(json_object_from_reply(response, credentials))


# --- the reply ----------------------------------------------------------------------------------


def _parse_reply(payload: dict[str, Any]) -> _Reply:
    content = payload.get("content")
    if not isinstance(content, list):
        raise invalid_reply("upstream reply has no 'content' list")
    blocks = [block for block in content if isinstance(block, dict)]
    text = "".join(
        block["text"]
        for block in blocks
        if block.get("type") == "text" and isinstance(block.get("text"), str)
    )
    tool_calls = [_tool_call(block) for block in blocks if block.get("type") == "tool_use"]
    message: dict[str, Any] = {
        "role": "assistant",
        # OpenAI's convention: no content at all, rather than an empty one, beside tool calls.
        "content": text if text or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    usage = payload.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    return _Reply(
        message_id=_non_empty_str(payload.get("id")),
        model=_non_empty_str(payload.get("model")),
        message=message,
        finish_reason=_FINISH_REASONS.get(str(payload.get("stop_reason")), "stop"),
        # input_tokens counts only the uncached part of the prompt; the prompt's size is the sum.
        prompt_tokens=_count(usage, "input_tokens")
        + _count(usage, "cache_creation_input_tokens")
        + _count(usage, "cache_read_input_tokens"),
        completion_tokens=_count(usage, "output_tokens"),
    )


def _tool_call(block: dict[str, Any]) -> dict[str, Any]:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input")
    if not (isinstance(call_id, str) and isinstance(name, str) and isinstance(arguments, dict)):
        raise invalid_reply("upstream tool_use block lacks an id, a name or an input object")
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def _chat_completion(replies: list[_Reply], model: str) -> dict[str, Any]:
    prompt_tokens = sum(reply.prompt_tokens for reply in replies)
    completion_tokens = sum(reply.completion_tokens for reply in replies)
    first = replies[0]
    return {
        "id": f"chatcmpl-{first.message_id or uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": first.model or model,
        "choices": [
            {
                "index": index,
                "message": reply.message,
                "logprobs": None,
                "finish_reason": reply.finish_reason,
            }
            for index, reply in enumerate(replies)
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _count(usage: dict[str, Any], name: str) -> int:
    value = usage.get(name)
    # bool is an int to Python, never a token count to a provider.
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _non_empty_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _unsupported(param: str, reason: str) -> ProviderError:
    return ProviderError(
        reason,
        status_code=400,
        error_type="invalid_request_error",
        code="unsupported_parameter",
        transient=False,
        is_gateway_error=True,
        param=param,
    )
