"""Server-side tools of a deployment, as its YAML declares them, and the loop's bounds.

A deployment's `tools:` is a list of tool sources, each with a `kind`:

- `http`: one function the gateway calls over HTTP (the arguments as a JSON body, or as query
  parameters for GET), described to the model by its name, description and JSON schema.
- `mcp`: an MCP server the gateway starts over stdio (command, args, env); every tool it lists
  (or those named in `allow`) is offered to the model.

`tool_loop:` bounds how the gateway runs them: how many calls per request, how long each may
take and how long the whole tool phase may take. Everything here is checked when the spec is
parsed (so `luodi deploy apply` refuses a bad one); nothing here touches the network or spawns
a process (that happens when a gateway builds the deployment).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

# OpenAI's rule for function names: the model and every client library accept these.
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` if it is a valid JSON Schema of an object (what function arguments are);
    ValueError naming the problem otherwise."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "the top level"
        raise ValueError(f"not a valid JSON Schema ({exc.message} at {where})") from None
    if schema.get("type") != "object":
        raise ValueError('the arguments schema must have "type": "object"')
    return schema


def _check_name(name: str, what: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"{what} {name!r} must be 1-64 letters, digits, '_' or '-'")
    return name


class HttpTool(BaseModel):
    """One function served by an HTTP endpoint."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["http"] = Field(description="An HTTP endpoint.")
    name: str = Field(description="Function name the model calls (letters, digits, _ and -).")
    description: str = Field(min_length=1, description="What it does, for the model.")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema of its arguments (an object); calls are checked against it.",
    )
    url: str = Field(description="The endpoint, http:// or https://.")
    method: Literal["POST", "GET"] = Field(
        default="POST",
        description="POST sends the arguments as a JSON body; GET as query parameters.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Headers sent with every call."
    )
    headers_env: dict[str, str] = Field(
        default_factory=dict,
        description="Header -> environment variable holding its value (secrets stay out of YAML).",
    )
    timeout_s: float | None = Field(
        default=None, gt=0, description="Seconds per call (default: tool_loop.timeout_s)."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "tool name")

    @field_validator("parameters")
    @classmethod
    def _schema(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_schema(v)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"url {v!r} must start with http:// or https:// and name a host")
        return v


class McpTools(BaseModel):
    """The tools of an MCP server run over stdio."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["mcp"] = Field(description="An MCP server over stdio.")
    name: str = Field(description="A name for this server (logs and errors).")
    command: str = Field(min_length=1, description="The executable that starts the server.")
    args: list[str] = Field(default_factory=list, description="Its arguments.")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables for it (on top of PATH, HOME and the like).",
    )
    cwd: str | None = Field(default=None, description="Its working directory.")
    allow: list[str] | None = Field(
        default=None,
        description="Offer only these of its tools (default: every tool it lists).",
    )
    prefix: str = Field(
        default="",
        description="Put before each of its tool names (to keep two servers' names apart).",
    )
    timeout_s: float | None = Field(
        default=None, gt=0, description="Seconds per call (default: tool_loop.timeout_s)."
    )
    startup_timeout_s: float = Field(
        default=30, gt=0, description="Seconds for the server to start and list its tools."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "MCP server name")

    @field_validator("allow")
    @classmethod
    def _allow(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("allow lists no tools; leave it out to offer them all")
        return v

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if v and not re.match(r"^[A-Za-z0-9_-]{1,32}$", v):
            raise ValueError(f"prefix {v!r} must be letters, digits, '_' or '-' (at most 32)")
        return v


ToolSpec = Annotated[HttpTool | McpTools, Field(discriminator="kind")]


class ToolLoop(BaseModel):
    """Bounds on the gateway's tool loop for one request."""

    model_config = ConfigDict(extra="forbid")

    max_calls: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Most server-side tool calls per request; then the model must answer.",
    )
    timeout_s: float = Field(
        default=10, gt=0, description="Seconds one tool call may take before it is an error."
    )
    total_timeout_s: float = Field(
        default=60,
        gt=0,
        description="Seconds for all tool calls of a request; then the model must answer.",
    )
    max_result_chars: int = Field(
        default=8000,
        ge=100,
        description="A tool result longer than this is cut before the model sees it.",
    )
    guard_results: bool = Field(
        default=True,
        description=(
            "Check tool results with the deployment guard's input policy (prompt injection "
            "through a tool); a blocked result is withheld from the model."
        ),
    )


def _unique(tools: list[HttpTool | McpTools]) -> list[HttpTool | McpTools]:
    """ValueError when two HTTP tools or two MCP servers share a name (MCP tools' own names
    are known only once the server runs: the gateway checks those when it starts them)."""
    seen: set[str] = set()
    for t in tools:
        key = f"{t.kind}:{t.name}"
        if key in seen:
            raise ValueError(f"two {t.kind} tools are named {t.name!r}")
        seen.add(key)
    return tools


ToolList = Annotated[list[ToolSpec], AfterValidator(_unique)]
"""A deployment's `tools:`."""


__all__ = ["HttpTool", "McpTools", "ToolList", "ToolLoop", "ToolSpec", "check_schema"]
