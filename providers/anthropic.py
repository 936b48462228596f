"""An OpenAI text completion served by the Anthropic Messages API.

Anthropic has no completions endpoint and no ``n``: each prompt becomes a one-message
conversation, repeated ``n`` times, and the replies are folded back into one ``text_completion``
whose choices are ordered as OpenAI orders them (prompt by prompt, ``n`` each).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from providers.base import Credentials, ProviderError, unsupported
from providers.errors import error_from_transport, invalid_reply, json_object_from_reply
from providers.transport import Timeouts, Transport, TransportError

API_VERSION = "2023-06-01"

# The OpenAI completions default; Anthropic insists on an explicit value.
DEFAULT_MAX_TOKENS = 16

T = TypeVar("T")

_FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


@dataclass(frozen=True)
class _Reply:
    message_id: str | None
    model: str | None
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


class AnthropicCompletions:
    """``POST {base_url}/v1/messages``; ``base_url`` is the host, e.g. ``https://api.anthropic.com``."""

    fans_out = True  # one Messages call per prompt and per choice

    def refusal(self, params: dict[str, Any]) -> ProviderError | None:
        # Anthropic cannot return token log probabilities, and a caller who asked for them would
        # otherwise get a result silently missing them.
        if params.get("logprobs") is not None:
            return _unsupported("logprobs", "logprobs are not supported by Anthropic models")
        try:
            _prompts(params.get("prompt"))
        except ProviderError as refused:
            return refused
        return None

    async def serve(
        self,
        transport: Transport,
        credentials: Credentials,
        model: str,
        params: dict[str, Any],
        timeouts: Timeouts,
    ) -> dict[str, Any]:
        # Checked at submit already; checked again because a job's params outlive a deploy.
        refused = self.refusal(params)
        if refused is not None:
            raise refused
        prompts = _prompts(params.get("prompt"))
        n = params.get("n") or 1
        url = messages_url(credentials.base_url)
        headers = request_headers(credentials)
        bodies = [message_body(model, prompt, params) for prompt in prompts]
        replies = await all_or_nothing(
            [
                _call(transport, url, headers, body, credentials, timeouts)
                for body in bodies
                for _ in range(n)
            ]
        )
        echo = bool(params.get("echo"))
        choices = [
            {
                "text": prompts[index // n] + reply.text if echo else reply.text,
                "index": index,
                "logprobs": None,
                "finish_reason": reply.finish_reason,
            }
            for index, reply in enumerate(replies)
        ]
        prompt_tokens = sum(reply.prompt_tokens for reply in replies)
        completion_tokens = sum(reply.completion_tokens for reply in replies)
        first = replies[0]
        return {
            "id": f"cmpl-{first.message_id or uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": first.model or model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def messages_url(base_url: str) -> str:
    # Users copy base URLs from other tools with or without the version; accept both.
    base = base_url.rstrip("/")
    base = base.removesuffix("/v1")
    return f"{base}/v1/messages"


def request_headers(credentials: Credentials) -> dict[str, str]:
    headers = {"anthropic-version": API_VERSION, "content-type": "application/json"}
    if credentials.api_key:
        headers["x-api-key"] = credentials.api_key
    return headers


def message_body(model: str, prompt: str, params: dict[str, Any]) -> dict[str, Any]:
    """The Messages request for one prompt; OpenAI-only parameters are left out on purpose."""
    max_tokens = params.get("max_tokens")
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
        "messages": [{"role": "user", "content": prompt}],
    }
    temperature = params.get("temperature")
    if temperature is not None:
        # OpenAI allows up to 2, Anthropic up to 1: the closest meaning is "as random as allowed".
        body["temperature"] = min(float(temperature), 1.0)
    if params.get("top_p") is not None:
        body["top_p"] = params["top_p"]
    stop = params.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if params.get("user"):
        body["metadata"] = {"user_id": params["user"]}
    return body


async def _call(
    transport: Transport,
    url: str,
    headers: dict[str, str],
    body: dict[str, Any],
    credentials: Credentials,
    timeouts: Timeouts,
) -> _Reply:
    try:
        response = await transport.post(
            url, headers=headers, body=json.dumps(body).encode(), timeouts=timeouts
        )
    except TransportError as exc:
        raise error_from_transport(exc) from exc
    return _parse_reply(json_object_from_reply(response, credentials))


async def all_or_nothing(calls: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run every call at once (Anthropic's fan-out for ``n`` and for each prompt); the first
    failure cancels the rest (a task group does that), since the whole request will be retried
    or given up, and a part of it is worth nothing."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(call) for call in calls]
    except* ProviderError as failures:
        raise failures.exceptions[0] from None
    return [task.result() for task in tasks]


def _parse_reply(payload: dict[str, Any]) -> _Reply:
    content = payload.get("content")
    if not isinstance(content, list):
        raise invalid_reply("upstream reply has no 'content' list")
    text = "".join(
        block["text"]
        for block in content
        if isinstance(block, dict)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
    )
    usage = payload.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    message_id, served_model = payload.get("id"), payload.get("model")
    return _Reply(
        message_id=message_id if isinstance(message_id, str) and message_id else None,
        model=served_model if isinstance(served_model, str) and served_model else None,
        text=text,
        finish_reason=_FINISH_REASONS.get(str(payload.get("stop_reason")), "stop"),
        # input_tokens counts only the uncached part of the prompt; the prompt's size is the sum.
        prompt_tokens=_tokens(usage, "input_tokens")
        + _tokens(usage, "cache_creation_input_tokens")
        + _tokens(usage, "cache_read_input_tokens"),
        completion_tokens=_tokens(usage, "output_tokens"),
    )


def _tokens(usage: dict[str, Any], name: str) -> int:
    value = usage.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _prompts(prompt: object) -> list[str]:
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return prompt
    # Token-id prompts are valid OpenAI input but have no meaning for another tokenizer.
    raise _unsupported("prompt", "Anthropic models take a prompt as a string or a list of strings")


def _unsupported(param: str, message: str) -> ProviderError:
    return unsupported(param, message)
