"""The server-side tools of one deployment version: their sources, started once, and the call.

A `ToolBox` is opened when a gateway builds a deployment version (MCP servers are started and
asked for their tools then, not per request) and closed when that version is swapped out, once
the requests still using it have finished. Tool sources are registered by kind in `TOOL_KINDS`
(`http`, `mcp`); each returns a `ToolSource` that lists `ToolDef`s and runs calls.

`ToolBox.execute` never raises for a tool's fault: bad JSON arguments, arguments that do not
match the schema, a timeout, an HTTP error or an MCP tool error all come back as an `Executed`
whose `text` starts with "error:", which the loop hands to the model as the tool's result.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from luodi.errors import StageFailedError
from luodi.registry import Registry
from luodi.serve.backends.base import ToolCall
from luodi.serve.tools.spec import ToolLoop

log = logging.getLogger("luodi.serve")

ARGS_LOG_CHARS = 2000  # arguments kept in the request log per call


class ToolFailure(Exception):
    """A tool ran and failed (HTTP 5xx, an MCP tool error): the message is for the model."""


@dataclass(frozen=True)
class ToolDef:
    """A function offered to the model."""

    name: str
    """The name the model calls (an MCP tool's name with its server's prefix)."""
    description: str
    parameters: dict[str, Any]
    """JSON Schema of the arguments."""
    kind: str
    """The source's kind: http or mcp."""
    source: str
    """The source's name (the HTTP tool or the MCP server)."""
    remote: str
    """The name the source knows it by."""

    def schema(self) -> dict[str, Any]:
        """The OpenAI `tools` entry."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


class ToolSource(Protocol):
    """A started source of tools (an HTTP endpoint, an MCP server)."""

    tools: list[ToolDef]
    timeout_s: float | None
    """Its own per-call timeout, if the spec set one."""

    async def start(self) -> None:
        """Connect / spawn and list the tools; raise a LuodiError saying why it cannot."""
        ...

    async def call(self, tool: ToolDef, arguments: dict[str, Any]) -> str:
        """The tool's result as text; ToolFailure when the tool reports an error."""
        ...

    async def aclose(self) -> None:
        """Release connections and processes."""
        ...


TOOL_KINDS: Registry[Callable[[Any], ToolSource]] = Registry("tool kind")


@dataclass
class Executed:
    """One tool call the gateway ran: the text the model sees and the log record."""

    text: str
    ok: bool
    record: dict[str, Any] = field(default_factory=dict)


def _validator(parameters: dict[str, Any]) -> Any:
    """A compiled JSON Schema validator, or None for a schema jsonschema cannot use (an MCP
    server's schema is its own business: then the server checks the arguments itself)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(parameters)
    except SchemaError:
        return None
    return Draft202012Validator(parameters)


def _masked(text: str) -> str:
    from luodi.data.ops.pii import mask_pii

    masked, _ = mask_pii(text)
    return masked if len(masked) <= ARGS_LOG_CHARS else masked[:ARGS_LOG_CHARS] + " …"


class ToolBox:
    """The started tool sources of a deployment version, by the names the model calls."""

    def __init__(self, sources: list[ToolSource], settings: ToolLoop) -> None:
        self.sources = sources
        self.settings = settings
        self._by_name: dict[str, tuple[ToolDef, ToolSource, Any]] = {}
        for src in sources:
            for t in src.tools:
                if t.name in self._by_name:
                    other = self._by_name[t.name][0]
                    raise StageFailedError(
                        f"tool name {t.name!r} is offered by both {other.kind} {other.source!r} "
                        f"and {t.kind} {t.source!r}; give one MCP server a `prefix` or an "
                        "`allow` list"
                    )
                self._by_name[t.name] = (t, src, _validator(t.parameters))
        self.inflight = 0
        self.closed = False

    @property
    def names(self) -> list[str]:
        """The tool names, sorted."""
        return sorted(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def schemas(self) -> list[dict[str, Any]]:
        """The OpenAI `tools` entries of every tool."""
        return [t.schema() for t, _, _ in self._by_name.values()]

    @contextmanager
    def lease(self) -> Iterator[ToolBox]:
        """Mark a request as using the box: `aclose` waits for it to end."""
        self.inflight += 1
        try:
            yield self
        finally:
            self.inflight -= 1

    async def execute(self, call: ToolCall, timeout_s: float) -> Executed:
        """Run the model's `call` (a tool of this box) within `timeout_s` seconds (or the
        source's own timeout when shorter); every failure becomes an "error: ..." result."""
        tool, src, validator = self._by_name[call.name]
        if src.timeout_s is not None:
            timeout_s = min(timeout_s, src.timeout_s)
        started = time.perf_counter()
        record: dict[str, Any] = {
            "direction": "tool",
            "name": call.name,
            "kind": tool.kind,
            "source": tool.source,
            "call_id": call.id,
            "arguments": _masked(call.arguments or "{}"),
        }
        try:
            args = self._arguments(call.arguments, validator)
            async with asyncio.timeout(timeout_s):
                text = await src.call(tool, args)
            ok, error = True, None
        except TimeoutError:
            ok, error = False, f"the tool did not answer within {timeout_s:g} s"
        except ToolFailure as exc:
            ok, error = False, str(exc) or "the tool failed"
        except Exception as exc:  # a broken connection, a dead server: the model is told
            log.warning("tool %s (%s %s) failed: %r", call.name, tool.kind, tool.source, exc)
            ok, error = False, f"{type(exc).__name__}: {exc}"
        if not ok:
            text = f"error: {error}"
        limit = self.settings.max_result_chars
        record |= {
            "ms": round((time.perf_counter() - started) * 1000, 2),
            "ok": ok,
            "error": error,
            "result_chars": len(text),
        }
        if len(text) > limit:
            text = text[:limit] + f" …[cut at {limit} characters]"
        return Executed(text, ok, record)

    @staticmethod
    def _arguments(raw: str, validator: Any) -> dict[str, Any]:
        try:
            args = json.loads(raw or "{}")
        except json.JSONDecodeError as exc:
            raise ToolFailure(f"the arguments are not valid JSON ({exc.msg})") from None
        if not isinstance(args, dict):
            raise ToolFailure("the arguments must be a JSON object")
        if validator is not None:
            errors = sorted(validator.iter_errors(args), key=lambda e: list(e.path))
            if errors:
                e = errors[0]
                where = "/".join(str(p) for p in e.path)
                raise ToolFailure(
                    "the arguments do not match the tool's schema: "
                    + (f"{where}: " if where else "")
                    + e.message
                )
        return args

    async def aclose(self, wait_s: float = 600.0) -> None:
        """Close every source once no request uses the box (at most `wait_s` seconds)."""
        if self.closed:
            return
        self.closed = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while self.inflight > 0 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await _close_all(self.sources)


async def _close_all(sources: list[ToolSource]) -> None:
    for src in sources:
        try:
            await src.aclose()
        except Exception as exc:  # a failing close must not break the server
            log.warning("closing tool source failed: %r", exc)


async def open_toolbox(specs: list[Any], settings: ToolLoop) -> ToolBox:
    """Start every tool source in `specs` (concurrently) and return their box; when one
    cannot start, the others are closed and a LuodiError names the source and why."""
    from luodi.serve.tools import http_tool, mcp_tool  # noqa: F401  (register the kinds)

    sources = [TOOL_KINDS.get(s.kind)(s) for s in specs]
    results = await asyncio.gather(*(s.start() for s in sources), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    try:
        if failed:
            raise failed[0]
        return ToolBox(sources, settings)
    except BaseException:
        await _close_all(sources)
        raise


__all__ = ["TOOL_KINDS", "Executed", "ToolBox", "ToolDef", "ToolFailure", "open_toolbox"]
