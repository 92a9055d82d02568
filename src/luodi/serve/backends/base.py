"""The serving backend protocol: requests, results, stream events, specs and the engine registry.

A backend serves one model: a local model version or base (transformers, llama.cpp), an
OpenAI-compatible upstream, or an embedder. The gateway talks to every one of them through
`Backend` only; `open_backend(store, spec)` picks the engine by `spec.engine` from `BACKENDS`.
Backends raise only LuodiError subclasses: BadInputError for a client mistake (a prompt longer
than the context, a capability the backend lacks, an upstream 4xx), BackendUnavailableError
for a failure on the serving side, BackendTimeoutError when it did not answer in time.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from luodi.errors import BadInputError, NotFoundError
from luodi.registry import Registry
from luodi.store import Store

OPENAI_PREFIX = "openai:"
CAPABILITIES = frozenset({"chat", "completions", "embeddings", "stream", "tools"})


@dataclass
class GenRequest:
    """One generation: chat `messages` (OpenAI shape) or a plain `prompt`, exactly one of them.

    `temperature` 0 decodes greedily. `stop` strings end the reply and are not part of it.
    `seed` makes sampling reproducible. `tools` are OpenAI tool schemas, `tool_choice` is
    "none" | "auto" | "required" | {"type": "function", "function": {"name": ...}}. `user`
    identifies the caller for fair queueing on local engines.
    """

    messages: list[dict[str, Any]] | None
    prompt: str | None
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    user: str | None = None


@dataclass
class ToolCall:
    """A function call the model asked for; `arguments` is JSON text."""

    id: str
    name: str
    arguments: str


@dataclass
class GenResult:
    """A finished reply with its usage.

    `finish_reason` is "stop" (end of reply or a stop string), "length" (max_tokens reached)
    or "tool_calls". `usage_estimated` is True when the backend could not count tokens (an
    upstream that reports no usage): the counts are then 0, not a guess.
    """

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage_estimated: bool = False
    served_by: str | None = None
    """Which member of a composite answered ("COMPOSITE:vN>MEMBER"); None for one model."""


@dataclass
class StreamDelta:
    """A piece of generated text."""

    text: str


@dataclass
class StreamEnd:
    """The last event of a stream: the whole text, finish_reason, usage and tool calls."""

    result: GenResult


class Backend(Protocol):
    """What the gateway calls to serve one model."""

    ref: str
    """What serves: "faq-bot:v3", "smollm2-135m-instruct:v1", "openai:http://h/v1#m", "e5"."""
    capabilities: frozenset[str]
    """A subset of {"chat", "completions", "embeddings", "stream", "tools"}."""

    async def generate(self, req: GenRequest) -> GenResult:
        """The whole reply to `req`."""
        ...

    def stream(self, req: GenRequest) -> AsyncIterator[StreamDelta | StreamEnd]:
        """The reply as it is generated: StreamDelta pieces, then one StreamEnd. Closing the
        iterator early (a client that disconnected) stops the generation."""
        ...

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """(one vector per text, tokens read)."""
        ...

    def stats(self) -> dict[str, float]:
        """Load figures, at least {"queue_depth": n, "active": n}."""
        ...

    async def aclose(self) -> None:
        """Release the model, threads and connections; later calls fail."""
        ...


class BackendSpec(BaseModel):
    """How a deployment route serves its model (part of a deployment's YAML)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        description=(
            "What serves: a model version (NAME, NAME:vN, NAME@stage), a composite (NAME, "
            "NAME:vN, composite:NAME), a base model ('default', "
            "a registered base, an HF folder or GGUF path), 'openai:http://HOST:PORT/v1#MODEL' "
            "for an OpenAI-compatible upstream, or an embedder ('minilm', 'e5', a "
            "sentence-transformers folder) with engine 'embedding'."
        )
    )
    engine: Literal["auto", "transformers", "llama_cpp", "openai", "embedding", "composite"] = (
        Field(
            default="auto",
            description=(
                "auto: openai:... -> openai; a composite (luodi models composite) -> composite; "
                "a GGUF base -> llama_cpp when llama-cpp-python is installed, else transformers; "
                "'minilm'/'e5' -> embedding; anything else -> transformers."
            ),
        )
    )
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description="transformers weights: auto = bfloat16 where this CPU runs it fast.",
    )
    max_batch: int = Field(
        default=8, ge=1, le=256, description="Most queued requests run as one batch (local)."
    )
    api_key_env: str | None = Field(
        default=None, description="Environment variable holding the upstream's API key."
    )
    timeout_s: float = Field(
        default=120, gt=0, description="Seconds to wait for the backend before a 504."
    )


BackendFactory = Callable[[Store, BackendSpec], Backend]
BACKENDS: Registry[BackendFactory] = Registry("backend engine")


def llama_cpp_installed() -> bool:
    """Whether llama-cpp-python can be imported (found without importing it)."""
    return importlib.util.find_spec("llama_cpp") is not None


def resolve_engine(store: Store, spec: BackendSpec) -> str:
    """The engine `spec` runs on: `spec.engine`, or for "auto" the one its model needs."""
    if spec.engine != "auto":
        return spec.engine
    model = spec.model.strip()
    if model.startswith(OPENAI_PREFIX):
        return "openai"
    from luodi.collab.composite import find_composite

    if find_composite(store, model) is not None:
        return "composite"
    from luodi.models.base import resolve_base
    from luodi.rag.embed import EMBEDDERS
    from luodi.train.versions import resolve_model

    try:
        resolve_model(store, model)
        return "transformers"
    except BadInputError:
        if "@" in model:  # a stage alias only names a model version: report that error
            raise
    try:
        base = resolve_base(store, model)
    except NotFoundError:
        if model in EMBEDDERS:
            return "embedding"

        def names(kind: str) -> str:
            return ", ".join(sorted({a.name for a in store.list(kind)})) or "none yet"

        raise NotFoundError(
            f"nothing to serve as {model!r}: known models: {names('model')}; known base "
            f"models: {names('base_model')} (also 'default', an HF folder or GGUF path, "
            f"openai:http://HOST:PORT/v1#MODEL, or with engine 'embedding' one of "
            f"{', '.join(EMBEDDERS.names())})"
        ) from None
    if base.meta.get("format") == "gguf" and llama_cpp_installed():
        return "llama_cpp"
    return "transformers"


def open_backend(store: Store, spec: BackendSpec) -> Backend:
    """The backend serving `spec.model` on the engine `resolve_engine` picks, loaded and ready.

    Blocking (loads weights): call it from a worker thread in async code. NotFoundError when
    the model resolves to nothing (naming what exists), BadInputError when the engine cannot
    serve it, MissingDependencyError when the engine's package is absent.
    """
    from luodi.serve import backends  # noqa: F401  (registers the engines)

    return BACKENDS.get(resolve_engine(store, spec))(store, spec)


def unsupported(ref: str, what: str) -> BadInputError:
    """The error for a request a backend cannot serve (e.g. embeddings from a chat model)."""
    return BadInputError(f"model {ref} does not support {what}")


def check_request(req: GenRequest, ref: str, capabilities: frozenset[str]) -> None:
    """BadInputError unless `req` has exactly one of messages/prompt that `ref` can serve and
    sane settings."""
    if (req.messages is None) == (req.prompt is None):
        raise BadInputError("a generation request needs exactly one of messages and prompt")
    if req.messages is not None and "chat" not in capabilities:
        raise unsupported(ref, "chat completions")
    if req.prompt is not None and "completions" not in capabilities:
        raise unsupported(ref, "plain completions")
    if req.max_tokens < 1:
        raise BadInputError(f"max_tokens must be at least 1, got {req.max_tokens}")
    if req.temperature < 0:
        raise BadInputError(f"temperature must be >= 0, got {req.temperature}")
    if not 0 < req.top_p <= 1:
        raise BadInputError(f"top_p must be in (0, 1], got {req.top_p}")


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendSpec",
    "GenRequest",
    "GenResult",
    "StreamDelta",
    "StreamEnd",
    "ToolCall",
    "check_request",
    "open_backend",
    "resolve_engine",
]
