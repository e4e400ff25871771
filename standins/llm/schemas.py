"""OpenAI's chat-completion request as the stand-in checks it, and the test-control API's fault.

Requests are validated strictly enough that a malformed one is a 400 naming its field, never
a 500; fields the stand-in does not use are accepted and ignored, as a provider would.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FunctionCall(_Lenient):
    name: str
    arguments: str  # a JSON string as the model wrote it, possibly not valid JSON


class ToolCall(_Lenient):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _per_role(self) -> Message:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a 'tool' message needs tool_call_id")
        if self.role in ("system", "developer", "user") and self.content is None:
            raise ValueError(f"a '{self.role}' message needs content")
        if self.role == "assistant" and self.content is None and not self.tool_calls:
            raise ValueError("an 'assistant' message needs content or tool_calls")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only 'assistant' messages carry tool_calls")
        return self


class FunctionDef(_Lenient):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] = {}


class Tool(_Lenient):
    type: Literal["function"]
    function: FunctionDef


class NamedToolChoice(_Lenient):
    type: Literal["function"]
    function: dict[str, str]

    @property
    def name(self) -> str:
        return self.function.get("name", "")


class StreamOptions(_Lenient):
    include_usage: bool = False


class ResponseFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"]


class ChatRequest(_Lenient):
    model: str
    messages: list[Message] = Field(min_length=1)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    temperature: float | None = Field(None, ge=0, le=2)

    @model_validator(mode="after")
    def _choice_offered(self) -> ChatRequest:
        if isinstance(self.tool_choice, NamedToolChoice):
            offered = [t.function.name for t in self.tools or []]
            if self.tool_choice.name not in offered:
                raise ValueError(f"tool_choice names '{self.tool_choice.name}', which is not among the tools")
        return self

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


FaultKind = Literal["status", "latency", "malformed_body", "content", "tool_call"]
# What each kind needs, and the only kind each of these fields belongs to.
_KIND_FIELD = {"status": "status", "latency": "latency_ms", "content": "content", "tool_call": "tool_call"}


class FaultSpec(BaseModel):
    """One injected fault: answers the next `count` requests of `user` (and `model`/`role` if given)."""

    model_config = ConfigDict(extra="forbid")  # a typo in a test's fault must not silently match everything

    user: str = Field(min_length=1)
    model: str | None = None
    role: str | None = None
    kind: FaultKind
    count: int = Field(ge=1, le=1000)
    status: Literal[429, 500, 502, 503] | None = None
    latency_ms: int | None = Field(None, ge=0, le=30000)
    content: str | None = None
    tool_call: FunctionCall | None = None

    @model_validator(mode="after")
    def _fields_of_kind(self) -> FaultSpec:
        for kind, name in _KIND_FIELD.items():
            given = getattr(self, name) is not None
            if kind == self.kind and not given:
                raise ValueError(f"kind '{kind}' needs {name}")
            if kind != self.kind and given:
                raise ValueError(f"{name} belongs to kind '{kind}', not '{self.kind}'")
        return self
