"""The gateway's request types: where each is submitted, and its result's openai SDK type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from openai import BaseModel
from openai.types import Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

ResultT = TypeVar("ResultT", bound=BaseModel)


@dataclass(frozen=True)
class RequestType(Generic[ResultT]):
    name: str  # what the CLI calls it (--type)
    path: str  # submit at it, poll at it + "/{id}", cancel at it + "/{id}/cancel"
    result: type[ResultT]  # a completed job's result, parsed

    def job_path(self, job_id: str) -> str:
        return f"{self.path}/{job_id}"


COMPLETIONS = RequestType("completions", "/v1/async/completions", Completion)
CHAT = RequestType("chat", "/v1/async/chat/completions", ChatCompletion)
RESPONSES = RequestType("responses", "/v1/async/responses", Response)
EMBEDDINGS = RequestType("embeddings", "/v1/async/embeddings", CreateEmbeddingResponse)

BY_NAME: dict[str, RequestType[Any]] = {
    kind.name: kind for kind in (CHAT, COMPLETIONS, RESPONSES, EMBEDDINGS)
}
