"""The OpenAI chat completions protocol (the parts luodi serves; the rest is refused clearly).

Fields clients commonly send with their default values (logprobs false, penalties 0, ...)
are accepted; asking for something luodi cannot do (logprobs, non-zero penalties, images) is a
400 that says so, rather than an answer that silently ignores the request.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class TextPart(BaseModel):
    """A text part of a message's content array."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["text"] = Field(description="Only text parts are served.")
    text: str = Field(description="The text.")


class FunctionCall(BaseModel):
    """A function call the assistant made."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="Function name.")
    arguments: str = Field(default="{}", description="Arguments as JSON text.")


class ToolCallIn(BaseModel):
    """A tool call in an assistant message of the history."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(description="Call id, echoed by the tool message that answers it.")
    type: Literal["function"] = Field(default="function", description="Always function.")
    function: FunctionCall = Field(description="The call.")


class ChatMessage(BaseModel):
    """One message of the conversation."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"] = Field(
        description="Who said it (developer is treated as system)."
    )
    content: str | list[TextPart] | None = Field(default=None, description="Text or text parts.")
    name: str | None = Field(default=None, description="Optional speaker name.")
    tool_calls: list[ToolCallIn] | None = Field(default=None, description="Assistant calls.")
    tool_call_id: str | None = Field(default=None, description="Which call a tool message answers.")

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)

    def to_backend(self) -> dict[str, Any]:
        """The message as a backend takes it (plain text content)."""
        role = "system" if self.role == "developer" else self.role
        out: dict[str, Any] = {"role": role, "content": self.text}
        if self.name:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out


class FunctionDef(BaseModel):
    """A function the model may call."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=64, description="Function name.")
    description: str | None = Field(default=None, description="What it does.")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema of its arguments.",
    )


class Tool(BaseModel):
    """A tool: only functions."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["function"] = Field(description="Always function.")
    function: FunctionDef = Field(description="The function.")


class StreamOptions(BaseModel):
    """Streaming options."""

    model_config = ConfigDict(extra="ignore")

    include_usage: bool = Field(default=False, description="Send a final chunk with usage.")


class SamplingFields(BaseModel):
    """Sampling parameters chat and completions share."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, description="The deployment to call.")
    max_tokens: int | None = Field(default=None, ge=1, description="Longest reply in tokens.")
    temperature: float = Field(default=1.0, ge=0, le=2, description="0 = greedy.")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling mass.")
    n: int = Field(default=1, ge=1, description="Number of choices.")
    stop: str | list[str] | None = Field(default=None, description="Up to 4 stop strings.")
    seed: int | None = Field(default=None, description="Sampling seed (reproducible replies).")
    stream: bool = Field(default=False, description="Stream the reply as server-sent events.")
    stream_options: StreamOptions | None = Field(default=None, description="Streaming options.")
    user: str | None = Field(default=None, description="End-user id (stickiness, abuse).")
    presence_penalty: float = Field(default=0.0, description="Only 0 is served.")
    frequency_penalty: float = Field(default=0.0, description="Only 0 is served.")
    logprobs: bool | int | None = Field(default=None, description="Not served.")

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> list[str]:
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop strings")
        if any(not s for s in stops):
            raise ValueError("stop strings must not be empty")
        return stops

    @model_validator(mode="after")
    def _unsupported(self) -> SamplingFields:
        if self.presence_penalty or self.frequency_penalty:
            raise ValueError("presence_penalty and frequency_penalty are not supported (use 0)")
        if self.logprobs:
            raise ValueError("logprobs are not supported by this gateway")
        return self


class ChatCompletionRequest(SamplingFields):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1, description="The conversation so far.")
    max_completion_tokens: int | None = Field(
        default=None, ge=1, description="Newer name of max_tokens."
    )
    tools: list[Tool] | None = Field(default=None, description="Functions the model may call.")
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = Field(
        default=None, description="none, auto, required, or {type: function, function: {name}}."
    )
    parallel_tool_calls: bool | None = Field(default=None, description="Accepted.")
    response_format: dict[str, Any] | None = Field(default=None, description="Only text.")

    @model_validator(mode="after")
    def _chat_checks(self) -> ChatCompletionRequest:
        if self.max_tokens is None and self.max_completion_tokens is not None:
            self.max_tokens = self.max_completion_tokens
        if self.response_format and self.response_format.get("type", "text") != "text":
            raise ValueError("response_format other than text is not supported")
        if isinstance(self.tool_choice, dict):
            name = (self.tool_choice.get("function") or {}).get("name")
            names = {t.function.name for t in self.tools or []}
            if not name or name not in names:
                raise ValueError(f"tool_choice names {name!r}, which is not among the tools")
        if self.tool_choice == "required" and not self.tools:
            raise ValueError("tool_choice 'required' needs tools")
        return self
