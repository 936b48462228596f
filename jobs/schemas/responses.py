"""The body of a Responses API request: OpenAI's ``POST /v1/responses`` parameters.

The input items a client writes itself (messages, function calls and their outputs, reasoning
items, references) are checked field by field; the items and tools of OpenAI's hosted tools
(web search, file search, computer use, ...) are objects of a known ``type``, passed on as they
are. Nested objects are prefixed ``Responses`` because the API document registers every one by
its class name, beside those of the other request types.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from jobs.schemas.base import RequestBody
from jobs.schemas.fields import (
    INVALID,
    UNKNOWN_TYPE,
    FunctionName,
    JsonObject,
    Metadata,
    ReasoningEffort,
    ServiceTier,
    Temperature,
    TokenLimit,
    TopLogprobs,
    TopP,
    User,
    json_type,
    refuse,
)

Status = Literal["in_progress", "completed", "incomplete"]

# The item and tool types of OpenAI's hosted tools, passed on without checking their fields.
HostedItemType = Literal[
    "file_search_call",
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
    "mcp_list_tools",
    "mcp_approval_request",
    "mcp_approval_response",
    "mcp_call",
    "custom_tool_call",
    "custom_tool_call_output",
    "compaction",
]
HOSTED_ITEM_TYPES = get_args(HostedItemType)
HostedToolType = Literal[
    "file_search",
    "web_search",
    "web_search_2025_08_26",
    "web_search_preview",
    "web_search_preview_2025_03_11",
    "computer",
    "computer_use_preview",
    "mcp",
    "code_interpreter",
    "image_generation",
    "local_shell",
    "shell",
    "custom",
    "apply_patch",
]
HOSTED_TOOL_TYPES = get_args(HostedToolType)


class _Open(JsonObject):
    """An object of a known type whose other fields are OpenAI's to check."""

    model_config = ConfigDict(extra="allow")


# Content parts


class ResponsesInputText(JsonObject):
    type: Literal["input_text"]
    text: str


class ResponsesInputImage(JsonObject):
    type: Literal["input_image"]
    image_url: str | None = Field(default=None, description="An image URL or a data URL.")
    file_id: str | None = None
    detail: Literal["auto", "low", "high"] | None = None

    @model_validator(mode="after")
    def _names_an_image(self) -> ResponsesInputImage:
        if self.image_url is None and self.file_id is None:
            raise refuse("Must give image_url or file_id.", at=".image_url")
        return self


class ResponsesInputFile(JsonObject):
    type: Literal["input_file"]
    file_id: str | None = None
    file_data: str | None = Field(default=None, description="Base64-encoded file content.")
    file_url: str | None = None
    filename: str | None = None

    @model_validator(mode="after")
    def _names_a_file(self) -> ResponsesInputFile:
        if self.file_id is None and self.file_data is None and self.file_url is None:
            raise refuse("Must give file_id, file_data or file_url.", at=".file_id")
        return self


class ResponsesOutputText(JsonObject):
    type: Literal["output_text"]
    text: str
    annotations: list[dict[str, Any]] | None = None
    logprobs: list[dict[str, Any]] | None = None


class ResponsesRefusal(JsonObject):
    type: Literal["refusal"]
    refusal: str


ResponsesContentPart = Annotated[
    ResponsesInputText
    | ResponsesInputImage
    | ResponsesInputFile
    | ResponsesOutputText
    | ResponsesRefusal,
    Field(discriminator="type"),
]
ResponsesToolOutputPart = Annotated[
    ResponsesInputText | ResponsesInputImage | ResponsesInputFile, Field(discriminator="type")
]

# Input items


class ResponsesMessage(JsonObject):
    """A message: one the client writes, or one of a previous response's output."""

    type: Literal["message"] | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: Annotated[
        Annotated[str, Tag("string")]
        | Annotated[list[ResponsesContentPart], Field(min_length=1), Tag("array")],
        Discriminator(
            json_type,
            custom_error_type=INVALID,
            custom_error_message="Must be a string or an array of content parts.",
        ),
    ]
    id: str | None = None
    status: Status | None = None


class ResponsesFunctionCall(JsonObject):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str = Field(description="The arguments, as a JSON string.")
    id: str | None = None
    status: Status | None = None


class ResponsesFunctionCallOutput(JsonObject):
    type: Literal["function_call_output"]
    call_id: str
    output: Annotated[
        Annotated[str, Tag("string")] | Annotated[list[ResponsesToolOutputPart], Tag("array")],
        Discriminator(
            json_type,
            custom_error_type=INVALID,
            custom_error_message="Must be a string or an array of input parts.",
        ),
    ]
    id: str | None = None
    status: Status | None = None


class ResponsesSummaryText(JsonObject):
    type: Literal["summary_text"]
    text: str


class ResponsesReasoningItem(JsonObject):
    type: Literal["reasoning"]
    id: str
    summary: list[ResponsesSummaryText]
    encrypted_content: str | None = None
    content: list[dict[str, Any]] | None = None
    status: Status | None = None


class ResponsesItemReference(JsonObject):
    type: Literal["item_reference"]
    id: str


class ResponsesHostedItem(_Open):
    """A hosted tool's call or its output, as a previous response gave it."""

    type: HostedItemType


_ITEM_CLASS_TAGS: dict[type[BaseModel], str] = {
    ResponsesMessage: "message",
    ResponsesFunctionCall: "function_call",
    ResponsesFunctionCallOutput: "function_call_output",
    ResponsesReasoningItem: "reasoning",
    ResponsesItemReference: "item_reference",
    ResponsesHostedItem: "hosted",
}
_ITEM_TAGS = frozenset(_ITEM_CLASS_TAGS.values()) - {"hosted"}
_HOSTED_ITEMS = frozenset(HOSTED_ITEM_TYPES)


def _item_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):  # serializing a validated item
        return _ITEM_CLASS_TAGS[type(value)]
    if not isinstance(value, dict):
        return "message"  # refused as not an object
    kind = value.get("type", "message" if "role" in value else None)
    if kind in _ITEM_TAGS:
        return str(kind)
    return "hosted" if kind in _HOSTED_ITEMS else None


ResponsesItem = Annotated[
    Annotated[ResponsesMessage, Tag("message")]
    | Annotated[ResponsesFunctionCall, Tag("function_call")]
    | Annotated[ResponsesFunctionCallOutput, Tag("function_call_output")]
    | Annotated[ResponsesReasoningItem, Tag("reasoning")]
    | Annotated[ResponsesItemReference, Tag("item_reference")]
    | Annotated[ResponsesHostedItem, Tag("hosted")],
    Discriminator(
        _item_kind,
        custom_error_type=UNKNOWN_TYPE,
        custom_error_message="Must be a message (role and content) or an item of a known type.",
    ),
]

# Tools


class ResponsesFunctionTool(JsonObject):
    type: Literal["function"]
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = Field(
        default=None, description="The function's arguments, as a JSON Schema object."
    )
    strict: bool | None = None


class ResponsesHostedTool(_Open):
    """One of OpenAI's hosted tools, configured as OpenAI documents it."""

    type: HostedToolType


_HOSTED_TOOLS = frozenset(HOSTED_TOOL_TYPES)


# Tags no body has as a key: an error's location holds the tag before the member's fields, and
# parse_request finds its param by following that location through the body.
FUNCTION_TAG = "function tool"
HOSTED_TAG = "hosted tool"


def _tool_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):  # serializing a validated tool
        return HOSTED_TAG if isinstance(value, ResponsesHostedTool) else FUNCTION_TAG
    if not isinstance(value, dict) or value.get("type") == "function":
        return FUNCTION_TAG
    return HOSTED_TAG if value.get("type") in _HOSTED_TOOLS else None


ResponsesTool = Annotated[
    Annotated[ResponsesFunctionTool, Tag(FUNCTION_TAG)]
    | Annotated[ResponsesHostedTool, Tag(HOSTED_TAG)],
    Discriminator(
        _tool_kind,
        custom_error_type=UNKNOWN_TYPE,
        custom_error_message="Must be a function or one of the hosted tools: "
        + ", ".join(HOSTED_TOOL_TYPES)
        + ".",
    ),
]


class ResponsesFunctionChoice(JsonObject):
    type: Literal["function"]
    name: str


class ResponsesHostedChoice(_Open):
    type: HostedToolType | Literal["allowed_tools"]


def _tool_choice_kind(value: Any) -> str:
    if isinstance(value, dict | BaseModel):
        kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        return FUNCTION_TAG if kind == "function" else HOSTED_TAG
    return json_type(value)


ResponsesToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], Tag("string")]
    | Annotated[ResponsesFunctionChoice, Tag(FUNCTION_TAG)]
    | Annotated[ResponsesHostedChoice, Tag(HOSTED_TAG)],
    Discriminator(
        _tool_choice_kind,
        custom_error_type=INVALID,
        custom_error_message="Must be 'none', 'auto', 'required' or an object naming a tool.",
    ),
]

# Text output and reasoning


class ResponsesTextFormat(JsonObject):
    type: Literal["text"]


class ResponsesJsonObjectFormat(JsonObject):
    type: Literal["json_object"]


class ResponsesJsonSchemaFormat(JsonObject):
    type: Literal["json_schema"]
    name: FunctionName
    schema_: dict[str, Any] = Field(alias="schema", description="A JSON Schema object.")
    description: str | None = None
    strict: bool | None = None


class ResponsesTextConfig(JsonObject):
    format: (
        Annotated[
            ResponsesTextFormat | ResponsesJsonObjectFormat | ResponsesJsonSchemaFormat,
            Field(discriminator="type"),
        ]
        | None
    ) = None
    verbosity: Literal["low", "medium", "high"] | None = None


Summary = Literal["auto", "concise", "detailed"]


class ResponsesReasoningConfig(JsonObject):
    effort: ReasoningEffort | None = None
    summary: Summary | None = None
    generate_summary: Summary | None = Field(
        default=None, description="Deprecated: summary replaces it."
    )


class ResponsesStreamOptions(JsonObject):
    include_obfuscation: bool | None = None


def _no_background(value: bool | None) -> bool | None:
    if value:
        raise refuse(
            "Not supported: every async job runs in the background already; poll the job.",
            code="unsupported_parameter",
        )
    return value


class ResponsesRequest(RequestBody):
    """A response: the model's next output for an input, with tools and reasoning."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"model": "openai/gpt-4o-mini", "input": "Say hi"}]}
    )

    input: Annotated[
        Annotated[str, Tag("string")]
        | Annotated[list[ResponsesItem], Field(min_length=1), Tag("array")],
        Discriminator(
            json_type,
            custom_error_type=INVALID,
            custom_error_message="Must be a string or an array of input items.",
        ),
    ]
    instructions: str | None = None
    tools: list[ResponsesTool] | None = None
    tool_choice: ResponsesToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: ResponsesTextConfig | None = None
    reasoning: ResponsesReasoningConfig | None = None
    max_output_tokens: TokenLimit | None = None
    max_tool_calls: TokenLimit | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    top_logprobs: TopLogprobs | None = None
    metadata: Metadata | None = None
    user: User | None = None
    truncation: Literal["auto", "disabled"] | None = None
    previous_response_id: str | None = None
    include: list[str] | None = None
    store: bool | None = None
    service_tier: ServiceTier | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    background: Annotated[bool | None, AfterValidator(_no_background)] = Field(
        default=None, description="Must be false or absent: every async job runs in background."
    )
    stream_options: ResponsesStreamOptions | None = Field(
        default=None, description="Only with stream, which async requests do not support."
    )

    @model_validator(mode="after")
    def _checks_across_fields(self) -> ResponsesRequest:
        if self.stream_options is not None and not self.stream:
            raise refuse("Only allowed when stream is true.", at=".stream_options")
        return self
