"""The request types the job API serves, each declared once.

A request type is its paths, its request schema (the one source of validation and of the API
document), the OpenAI object its result is, and the adapter that serves it on each provider
protocol. The URLs, the views, the submit checks and the worker's routing all read these
declarations: serving a new type is a new schema, its adapters and one entry in ``KINDS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from jobs.models import RequestType
from jobs.schemas.base import RequestBody
from jobs.schemas.chat import ChatCompletionRequest
from jobs.schemas.completions import CompletionRequest
from jobs.schemas.embeddings import EmbeddingRequest
from jobs.schemas.responses import ResponsesRequest
from providers.anthropic import AnthropicCompletions
from providers.anthropic_chat import AnthropicChatCompletions
from providers.base import Adapter
from providers.openai import OpenAICompletions
from providers.openai_chat import OpenAIChatCompletions
from providers.openai_embeddings import OpenAIEmbeddings
from providers.openai_responses import OpenAIResponses


@dataclass(frozen=True)
class RequestKind:
    request_type: RequestType
    path: str  # under /v1/: submit at it, poll at it + "/{job_id}"
    name: str  # the stem of its URL names and OpenAPI operation ids
    title: str  # what it is called in the API document and in errors
    schema: type[RequestBody]
    result_type: str  # the OpenAI object a completed job's result is (its openai SDK type)
    adapters: Mapping[str, Adapter]  # provider protocol -> the adapter serving this type


COMPLETIONS = RequestKind(
    request_type=RequestType.TEXT_COMPLETION,
    path="async/completions",
    name="completion",
    title="text completion",
    schema=CompletionRequest,
    result_type="Completion",
    adapters={"openai": OpenAICompletions(), "anthropic": AnthropicCompletions()},
)
CHAT_COMPLETIONS = RequestKind(
    request_type=RequestType.CHAT_COMPLETION,
    path="async/chat/completions",
    name="chat_completion",
    title="chat completion",
    schema=ChatCompletionRequest,
    result_type="ChatCompletion",
    adapters={"openai": OpenAIChatCompletions(), "anthropic": AnthropicChatCompletions()},
)
RESPONSES = RequestKind(
    request_type=RequestType.RESPONSES,
    path="async/responses",
    name="response",
    title="response",
    schema=ResponsesRequest,
    result_type="Response",
    adapters={"openai": OpenAIResponses()},
)
EMBEDDINGS = RequestKind(
    request_type=RequestType.EMBEDDING,
    path="async/embeddings",
    name="embedding",
    title="embedding",
    schema=EmbeddingRequest,
    result_type="CreateEmbeddingResponse",
    adapters={"openai": OpenAIEmbeddings()},
)

KINDS: tuple[RequestKind, ...] = (COMPLETIONS, CHAT_COMPLETIONS, RESPONSES, EMBEDDINGS)

BY_TYPE: Mapping[str, RequestKind] = {kind.request_type.value: kind for kind in KINDS}
