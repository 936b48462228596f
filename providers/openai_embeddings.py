"""The OpenAI embeddings protocol, spoken by OpenAI and every OpenAI-compatible server.

The reply is normalised so the job's result parses as the official SDK's
``CreateEmbeddingResponse``. Each vector is kept as the provider sent it: a list of floats, or
the base64 string a caller gets when it asked for ``encoding_format: "base64"``.
"""

from __future__ import annotations

from typing import Any

from providers.errors import invalid_reply
from providers.openai_protocol import OpenAIEndpoint, integer, non_empty_str, number


def normalise_embeddings(payload: dict[str, Any], requested_model: str) -> dict[str, Any]:
    """A ``list`` of embeddings the SDK accepts, filling what lenient servers leave out."""
    data = payload.get("data")
    if not isinstance(data, list):
        raise invalid_reply("upstream reply has no 'data' list")
    return {
        "object": "list",
        "data": [_embedding(item, position) for position, item in enumerate(data)],
        "model": non_empty_str(payload.get("model")) or requested_model,
        "usage": _usage(payload.get("usage")),
    }


def _embedding(item: object, position: int) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise invalid_reply(f"upstream embedding {position} is not an object")
    vector = item.get("embedding")
    is_floats = isinstance(vector, list) and all(number(value) is not None for value in vector)
    if not (is_floats or isinstance(vector, str)):
        raise invalid_reply(f"upstream embedding {position} is neither numbers nor base64 text")
    index = integer(item.get("index"))
    return {
        "object": "embedding",
        "index": position if index is None else index,
        "embedding": vector,
    }


def _usage(usage: object) -> dict[str, int]:
    # The SDK requires usage; a server that counted nothing is reported as having counted zero.
    counted = usage if isinstance(usage, dict) else {}
    prompt = integer(counted.get("prompt_tokens")) or 0
    total = integer(counted.get("total_tokens"))
    return {"prompt_tokens": prompt, "total_tokens": prompt if total is None else total}


class OpenAIEmbeddings(OpenAIEndpoint):
    """``POST {base_url}/embeddings``; ``base_url`` already ends in the API version (``/v1``)."""

    path = "embeddings"
    normalise = staticmethod(normalise_embeddings)
