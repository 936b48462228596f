"""The OpenAI completions protocol, spoken by OpenAI and every OpenAI-compatible server.

vLLM, Ollama, Groq, Together, OpenRouter, Mistral and others answer the same request, but not
always with the same care: ids, timestamps, finish reasons and usage are normalised here so the
job's result always parses as the official SDK's ``Completion``.
"""

from __future__ import annotations

from typing import Any

from providers.errors import invalid_reply
from providers.openai_protocol import (
    OpenAIEndpoint,
    choices_reply,
    integer,
    one_of,
)

FINISH_REASONS = frozenset({"stop", "length", "content_filter"})


def normalise_completion(payload: dict[str, Any], requested_model: str) -> dict[str, Any]:
    """A ``text_completion`` dict the SDK accepts, filling what lenient servers leave out."""
    return choices_reply(
        payload, requested_model, kind="text_completion", id_prefix="cmpl", choice=_choice
    )


def finish_reason(value: object) -> str:
    # The SDK accepts only three values; servers also send null, "eos" or "abort", and a
    # completion that ended for any reason but length or filtering simply stopped.
    return one_of(value, FINISH_REASONS, "stop")


def _choice(choice: object, position: int) -> dict[str, Any]:
    if not isinstance(choice, dict):
        raise invalid_reply(f"upstream choice {position} is not an object")
    text = choice.get("text")
    if text is None:  # a filtered choice may come back with a null text
        text = ""
    if not isinstance(text, str):
        raise invalid_reply(f"upstream choice {position} has a 'text' that is not a string")
    index = integer(choice.get("index"))
    logprobs = choice.get("logprobs")
    return {
        "text": text,
        "index": position if index is None else index,
        "logprobs": logprobs if isinstance(logprobs, dict) else None,
        "finish_reason": finish_reason(choice.get("finish_reason")),
    }


class OpenAICompletions(OpenAIEndpoint):
    """``POST {base_url}/completions``; ``base_url`` already ends in the API version (``/v1``)."""

    path = "completions"
    normalise = staticmethod(normalise_completion)
