"""The body of a chat completion request: OpenAI's chat completions parameters.

Messages are told apart by ``role``, content parts and response formats by ``type``; a
content is a string or an array of parts. Nested objects are prefixed ``Chat`` because the API
document registers every one by its class name, beside those of the other request types.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag, model_validator

from jobs.schemas.base import RequestBody
from jobs.schemas.fields import (
    INVALID,
    Choices,
    FunctionName,
    JsonObject,
    LogitBias,
    Metadata,
    Penalty,
    ReasoningEffort,
    Seed,
    ServiceTier,
    Stop,
    Temperature,
    TokenLimit,
    TopLogprobs,
    TopP,
    User,
    json_type,
    refuse,
)

# Content parts


class ChatTextPart(JsonObject):
    type: Literal["text"]
    text: str


class ChatImageUrl(JsonObject):
    url: str = Field(description="An image URL or a base64 data URL.")
    detail: Literal["auto", "low", "high"] | None = None


class ChatImagePart(JsonObject):
    type: Literal["image_url"]
    image_url: ChatImageUrl


class ChatInputAudio(JsonObject):
    data: str = Field(description="Base64-encoded audio.")
    format: Literal["wav", "mp3"]


class ChatAudioPart(JsonObject):
    type: Literal["input_audio"]
    input_audio: ChatInputAudio


class ChatFile(JsonObject):
    file_data: str | None = Field(default=None, description="Base64-encoded file content.")
    file_id: str | None = None
    filename: str | None = None

    @model_validator(mode="after")
    def _names_a_file(self) -> ChatFile:
        if self.file_data is None and self.file_id is None:
            raise refuse("Must give file_data or file_id.", at=".file_data")
        return self


class ChatFilePart(JsonObject):
    type: Literal["file"]
    file: ChatFile


class ChatRefusalPart(JsonObject):
    type: Literal["refusal"]
    refusal: str


ChatUserPart = Annotated[
    ChatTextPart | ChatImagePart | ChatAudioPart | ChatFilePart, Field(discriminator="type")
]
ChatAssistantPart = Annotated[ChatTextPart | ChatRefusalPart, Field(discriminator="type")]

TextContent = Annotated[
    Annotated[str, Tag("string")]
    | Annotated[list[ChatTextPart], Field(min_length=1), Tag("array")],
    Discriminator(
        json_type,
        custom_error_type=INVALID,
        custom_error_message="Must be a string or an array of text parts.",
    ),
]
UserContent = Annotated[
    Annotated[str, Tag("string")]
    | Annotated[list[ChatUserPart], Field(min_length=1), Tag("array")],
    Discriminator(
        json_type,
        custom_error_type=INVALID,
        custom_error_message="Must be a string or an array of content parts.",
    ),
]
AssistantContent = Annotated[
    Annotated[str, Tag("string")]
    | Annotated[list[ChatAssistantPart], Field(min_length=1), Tag("array")],
    Discriminator(
        json_type,
        custom_error_type=INVALID,
        custom_error_message="Must be a string, null or an array of text and refusal parts.",
    ),
]

# Messages


class ChatSystemMessage(JsonObject):
    role: Literal["system"]
    content: TextContent
    name: str | None = None


class ChatDeveloperMessage(JsonObject):
    role: Literal["developer"]
    content: TextContent
    name: str | None = None


class ChatUserMessage(JsonObject):
    role: Literal["user"]
    content: UserContent
    name: str | None = None


class ChatToolCallFunction(JsonObject):
    name: str
    arguments: str = Field(description="The arguments, as a JSON string.")


class ChatToolCall(JsonObject):
    id: str
    type: Literal["function"]
    function: ChatToolCallFunction


class ChatAssistantAudio(JsonObject):
    id: str


class ChatAssistantMessage(JsonObject):
    role: Literal["assistant"]
    content: AssistantContent | None = None
    refusal: str | None = None
    name: str | None = None
    tool_calls: list[ChatToolCall] | None = None
    function_call: ChatToolCallFunction | None = Field(
        default=None, description="Deprecated: tool_calls replaces it."
    )
    audio: ChatAssistantAudio | None = None

    @model_validator(mode="after")
    def _says_something(self) -> ChatAssistantMessage:
        if self.content is None and not self.tool_calls and self.function_call is None:
            raise refuse(
                "This field is required unless tool_calls or function_call is given.",
                at=".content",
            )
        return self


class ChatToolMessage(JsonObject):
    role: Literal["tool"]
    content: TextContent
    tool_call_id: str


class ChatFunctionMessage(JsonObject):
    """Deprecated: the result of a function call, before tools."""

    role: Literal["function"]
    name: str
    content: str | None


ChatMessage = Annotated[
    ChatSystemMessage
    | ChatDeveloperMessage
    | ChatUserMessage
    | ChatAssistantMessage
    | ChatToolMessage
    | ChatFunctionMessage,
    Field(discriminator="role"),
]

# Tools


class ChatFunctionDefinition(JsonObject):
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = Field(
        default=None, description="The function's arguments, as a JSON Schema object."
    )
    strict: bool | None = None


class ChatTool(JsonObject):
    type: Literal["function"]
    function: ChatFunctionDefinition


class ChatToolChoiceFunction(JsonObject):
    name: str


class ChatNamedToolChoice(JsonObject):
    type: Literal["function"]
    function: ChatToolChoiceFunction


ToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], Tag("string")]
    | Annotated[ChatNamedToolChoice, Tag("object")],
    Discriminator(
        json_type,
        custom_error_type=INVALID,
        custom_error_message="Must be 'none', 'auto', 'required' or an object naming a function.",
    ),
]

# Response formats


class ChatTextFormat(JsonObject):
    type: Literal["text"]


class ChatJsonObjectFormat(JsonObject):
    type: Literal["json_object"]


class ChatJsonSchema(JsonObject):
    name: FunctionName
    description: str | None = None
    schema_: dict[str, Any] | None = Field(
        default=None, alias="schema", description="A JSON Schema object."
    )
    strict: bool | None = None


class ChatJsonSchemaFormat(JsonObject):
    type: Literal["json_schema"]
    json_schema: ChatJsonSchema


ChatResponseFormat = Annotated[
    ChatTextFormat | ChatJsonObjectFormat | ChatJsonSchemaFormat, Field(discriminator="type")
]

# Other parameters


class ChatAudioOutput(JsonObject):
    voice: str
    format: Literal["wav", "aac", "mp3", "flac", "opus", "pcm16"]


class ChatPrediction(JsonObject):
    type: Literal["content"]
    content: TextContent


class ChatStreamOptions(JsonObject):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class ChatCompletionRequest(RequestBody):
    """A chat completion: the next message of a conversation."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "openai/gpt-4o-mini",
                    "messages": [{"role": "user", "content": "Say hi"}],
                    "max_completion_tokens": 16,
                }
            ]
        }
    )

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    tools: list[ChatTool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ChatResponseFormat | None = None
    max_tokens: TokenLimit | None = Field(
        default=None, description="Deprecated: max_completion_tokens replaces it."
    )
    max_completion_tokens: TokenLimit | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: Choices | None = None
    stop: Stop | None = None
    seed: Seed | None = None
    logprobs: bool | None = None
    top_logprobs: TopLogprobs | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: LogitBias | None = None
    user: User | None = None
    metadata: Metadata | None = None
    reasoning_effort: ReasoningEffort | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    audio: ChatAudioOutput | None = None
    prediction: ChatPrediction | None = None
    service_tier: ServiceTier | None = None
    store: bool | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    stream_options: ChatStreamOptions | None = Field(
        default=None, description="Only with stream, which async requests do not support."
    )

    @model_validator(mode="after")
    def _checks_across_fields(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise refuse("Requires logprobs to be true.", at=".top_logprobs")
        if self.stream_options is not None and not self.stream:
            raise refuse("Only allowed when stream is true.", at=".stream_options")
        return self
