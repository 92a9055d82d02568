"""`kind: mcp` tools: an MCP server the gateway runs over stdio, one per deployment version.

The connection lives in a task of its own: the `mcp` client's task groups must be entered and
left by the same task, while requests call tools from theirs. `start` spawns the server,
negotiates the protocol (`mcp.Client`, mode auto: a 2026 server is discovered, an older one
gets the initialize handshake), lists its tools (every page) and keeps the ones `allow` names;
`aclose` ends the task, which closes stdin and stops the process.

A tool result is its text content joined by newlines (structured content as JSON when there is
no text; other content types are named, not inlined); `is_error` results become ToolFailure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from luodi.errors import StageFailedError
from luodi.serve.tools.box import TOOL_KINDS, ToolDef, ToolFailure
from luodi.serve.tools.spec import McpTools

log = logging.getLogger("luodi.serve")

MAX_PAGES = 100  # of tools/list: a server that pages forever cannot hang a deployment build
CLOSE_WAIT_S = 10.0  # the client's own shutdown is bounded (~5 s); this is a backstop


def result_text(result: Any) -> str:
    """The text the model sees for an MCP CallToolResult."""
    parts: list[str] = []
    for c in result.content or []:
        if getattr(c, "type", None) == "text":
            parts.append(c.text)
        else:
            parts.append(f"[{getattr(c, 'type', 'unknown')} content not shown]")
    if not parts and result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False)
    return "\n".join(parts)


@TOOL_KINDS.register("mcp")
class McpSource:
    """An MCP server over stdio and the tools it offers."""

    def __init__(self, spec: McpTools) -> None:
        self.spec = spec
        self.timeout_s = spec.timeout_s
        self.tools: list[ToolDef] = []
        self._client: Any = None
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None

    @property
    def label(self) -> str:
        return f"MCP server {self.spec.name!r} ({' '.join([self.spec.command, *self.spec.args])})"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[list[Any]] = loop.create_future()
        self._stop = asyncio.Event()
        self._task = loop.create_task(self._run(ready), name=f"mcp:{self.spec.name}")
        try:
            async with asyncio.timeout(self.spec.startup_timeout_s):
                listed = await asyncio.shield(ready)
        except TimeoutError:
            await self.aclose()
            raise StageFailedError(
                f"{self.label} did not start and list its tools within "
                f"{self.spec.startup_timeout_s:g} s"
            ) from None
        except Exception as exc:
            await self.aclose()
            raise StageFailedError(f"{self.label} did not start: {_why(exc)}") from None
        self.tools = self._select(listed)

    def _select(self, listed: list[Any]) -> list[ToolDef]:
        by_name = {t.name: t for t in listed}
        allow = self.spec.allow
        if allow is not None:
            missing = [n for n in allow if n not in by_name]
            if missing:
                raise StageFailedError(
                    f"{self.label} has no tool {', '.join(map(repr, missing))}; it lists: "
                    f"{', '.join(sorted(by_name)) or 'none'}"
                )
        chosen = [by_name[n] for n in allow] if allow is not None else listed
        return [
            ToolDef(
                name=self.spec.prefix + t.name,
                description=t.description or t.title or t.name,
                parameters=t.input_schema or {"type": "object", "properties": {}},
                kind="mcp",
                source=self.spec.name,
                remote=t.name,
            )
            for t in chosen
        ]

    async def _run(self, ready: asyncio.Future[list[Any]]) -> None:
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters

        params = StdioServerParameters(
            command=self.spec.command,
            args=list(self.spec.args),
            env=dict(self.spec.env) or None,
            cwd=self.spec.cwd,
        )
        assert self._stop is not None
        try:
            async with Client(params, cache=None) as client:
                listed: list[Any] = []
                cursor = None
                for _ in range(MAX_PAGES):
                    page = await client.list_tools(cursor=cursor)
                    listed.extend(page.tools)
                    cursor = page.next_cursor
                    if cursor is None:
                        break
                self._client = client
                ready.set_result(listed)
                await self._stop.wait()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
            else:
                log.warning("%s stopped: %s", self.label, _why(exc))
        finally:
            self._client = None
            if not ready.done():
                ready.cancel()

    async def call(self, tool: ToolDef, arguments: dict[str, Any]) -> str:
        client = self._client
        if client is None:
            raise ToolFailure(f"{self.label} is not running")
        result = await client.call_tool(tool.remote, arguments)
        text = result_text(result)
        if result.is_error:
            raise ToolFailure(text or "the tool reported an error")
        return text

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        if self._stop is not None:
            self._stop.set()
        try:
            async with asyncio.timeout(CLOSE_WAIT_S):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        except Exception as exc:
            log.warning("closing %s: %s", self.label, _why(exc))


def _why(exc: BaseException) -> str:
    """A one-line reason, unwrapping anyio's exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
