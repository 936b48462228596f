"""The body of a text completion request: OpenAI's legacy completions parameters."""

from __future__ import annotations

from typing import Annotated, Any

from django.conf import settings
from pydantic import ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from jobs.schemas.base import RequestBody
from jobs.schemas.fields import (
    INVALID,
    RANGE_FIRST,
    Choices,
    LogitBias,
    MaxTokens,
    Penalty,
    Seed,
    Stop,
    Temperature,
    TokenId,
    TopP,
    User,
    input_kind,
    refuse,
)

Prompt = Annotated[
    Annotated[str, Tag("text")]
    | Annotated[list[str], Field(min_length=1), Tag("texts")]
    | Annotated[list[TokenId], Field(min_length=1), Tag("tokens")]
    | Annotated[
        list[Annotated[list[TokenId], Field(min_length=1)]], Field(min_length=1), Tag("token_lists")
    ],
    Discriminator(
        input_kind,
        custom_error_type=INVALID,
        custom_error_message="Must be a string, a non-empty array of strings, an array of token "
        "ids or an array of arrays of token ids.",
    ),
]


class CompletionRequest(RequestBody):
    """A text completion: a prompt, or several, to continue."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"model": "openai/gpt-3.5-turbo-instruct", "prompt": "Say hi", "max_tokens": 16}
            ]
        }
    )

    prompt: Prompt
    best_of: Annotated[int, Field(ge=0, le=20), RANGE_FIRST] | None = None
    echo: bool | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: LogitBias | None = None
    logprobs: Annotated[int, Field(ge=0, le=5), RANGE_FIRST] | None = None
    max_tokens: MaxTokens | None = None
    n: Choices | None = None
    presence_penalty: Penalty | None = None
    seed: Seed | None = None
    stop: Stop | None = None
    suffix: Annotated[str, Field(max_length=100_000)] | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    user: User | None = None

    @field_validator("prompt")
    @classmethod
    def _within_limits(cls, prompt: Any) -> Any:
        """The gateway's own bounds on prompts, which its settings may change at any time."""
        prompts = _prompts(prompt)
        if len(prompts) > settings.GATEWAY_MAX_PROMPTS:
            raise refuse(
                f"At most {settings.GATEWAY_MAX_PROMPTS} prompts are accepted in one request."
            )
        limit = settings.GATEWAY_MAX_PROMPT_CHARS
        for index, one in enumerate(prompts):
            if len(one) > limit:
                raise refuse(
                    f"A prompt may hold at most {limit} characters (or tokens).",
                    at=f"[{index}]" if prompts is prompt else "",
                )
        return prompt

    @model_validator(mode="after")
    def _best_of_at_least_n(self) -> CompletionRequest:
        if self.best_of is not None and self.best_of < (self.n or 1):
            raise refuse("Must be greater than or equal to n.", at=".best_of")
        return self

    def upstream_calls(self) -> int:
        return len(_prompts(self.prompt)) * max(self.n or 1, self.best_of or 1)


def _prompts(prompt: Any) -> list[Any]:
    """The prompts of a ``prompt``: one string or one array of token ids is one prompt."""
    return prompt if input_kind(prompt) in ("texts", "token_lists") else [prompt]
