"""The body of an embedding request: OpenAI's embeddings parameters."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag

from jobs.schemas.base import RequestBody
from jobs.schemas.fields import INVALID, RANGE_FIRST, TokenId, User, input_kind

# OpenAI's limit on the inputs of one request.
MAX_INPUTS = 2048

TokenIds = Annotated[list[TokenId], Field(min_length=1)]

EmbeddingInput = Annotated[
    Annotated[str, Field(min_length=1), Tag("text")]
    | Annotated[
        list[Annotated[str, Field(min_length=1)]],
        Field(min_length=1, max_length=MAX_INPUTS),
        Tag("texts"),
    ]
    | Annotated[TokenIds, Tag("tokens")]
    | Annotated[list[TokenIds], Field(min_length=1, max_length=MAX_INPUTS), Tag("token_lists")],
    Discriminator(
        input_kind,
        custom_error_type=INVALID,
        custom_error_message="Must be a string, an array of strings, an array of token ids or "
        "an array of arrays of token ids.",
    ),
]


class EmbeddingRequest(RequestBody):
    """An embedding: a vector for each input text."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"model": "openai/text-embedding-3-small", "input": "Say hi"}]
        }
    )

    input: EmbeddingInput
    dimensions: Annotated[int, Field(ge=1, le=65_536), RANGE_FIRST] | None = None
    encoding_format: Literal["float", "base64"] | None = None
    user: User | None = None

    def upstream_calls(self) -> int:
        """One call, whatever the number of inputs: they are embedded in one request."""
        return 1
