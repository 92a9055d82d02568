"""A scripted backend for gateway tests: it implements the Backend protocol with replies a test
decides (echo, a fixed text, a tool call, a slow stream), so routing, guards, limits and hot
swap can be checked exactly and fast. Real engines have their own tests in tests/serve/backends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from luodi.serve.backends import open_backend
from luodi.serve.backends.base import (
    BackendSpec,
    GenRequest,
    GenResult,
    StreamDelta,
    StreamEnd,
    ToolCall,
)
from luodi.store import Store

FAKE = "openai:http://fake.invalid/v1#"


def _last_user(req: GenRequest) -> str:
    if req.prompt is not None:
        return req.prompt
    users = [m["content"] for m in req.messages or [] if m["role"] == "user"]
    return users[-1] if users else ""


class ScriptedBackend:
    """Replies `<name>: <last user message>` unless the message asks for a script:
    `say:TEXT` replies TEXT, `slow:N` streams N pieces 20 ms apart, and with tools it calls
    the first tool with {"q": message}."""

    capabilities = frozenset({"chat", "completions", "embeddings", "stream", "tools"})

    def __init__(self, name: str) -> None:
        self.ref = FAKE + name
        self.name = name
        self.calls = 0
        self.closed = False

    def _reply(self, req: GenRequest) -> tuple[list[str], float]:
        msg = _last_user(req)
        if msg.startswith("say:"):
            text = msg[4:]
            return [text[i : i + 3] for i in range(0, len(text), 3)], 0.0
        if msg.startswith("slow:"):
            return [f"{self.name}-{i} " for i in range(int(msg[5:]))], 0.02
        text = f"{self.name}: {msg}"
        return [text[i : i + 4] for i in range(0, len(text), 4)], 0.0

    def _result(self, req: GenRequest, pieces: list[str]) -> GenResult:
        if req.tools:
            fn = req.tools[0]["function"]["name"]
            import json

            args = json.dumps({"q": _last_user(req)}, ensure_ascii=False)
            return GenResult("", "tool_calls", 5, 3, [ToolCall("call_1", fn, args)])
        text = "".join(pieces)
        return GenResult(text, "stop", len(_last_user(req)), len(pieces))

    async def generate(self, req: GenRequest) -> GenResult:
        if self.closed:
            raise RuntimeError("backend used after close")
        self.calls += 1
        pieces, delay = self._reply(req)
        await asyncio.sleep(delay * len(pieces))
        return self._result(req, pieces)

    async def stream(self, req: GenRequest) -> AsyncIterator[StreamDelta | StreamEnd]:
        if self.closed:
            raise RuntimeError("backend used after close")
        self.calls += 1
        pieces, delay = self._reply(req)
        for p in pieces:
            if delay:
                await asyncio.sleep(delay)
            yield StreamDelta(p)
        yield StreamEnd(self._result(req, pieces))

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        return [[float(len(t)), 1.0, 0.0] for t in texts], sum(len(t) for t in texts)

    def stats(self) -> dict[str, float]:
        return {"queue_depth": 0, "active": 0}

    async def aclose(self) -> None:
        self.closed = True


def fake_opener(opened: dict[str, Any] | None = None) -> Callable[[Store, BackendSpec], Any]:
    """An opener serving `openai:http://fake.invalid/v1#NAME` with ScriptedBackend(NAME) (NAME
    `broken…` fails to open) and everything else with the real engines; `opened` collects
    the fakes by name."""

    def open_(store: Store, spec: BackendSpec) -> Any:
        if spec.model.startswith(FAKE + "broken"):
            from luodi.errors import StageFailedError

            raise StageFailedError(f"cannot load {spec.model}: weights are corrupt")
        if spec.model.startswith(FAKE):
            backend = ScriptedBackend(spec.model[len(FAKE) :])
            if opened is not None:
                opened[backend.name] = backend
            return backend
        return open_backend(store, spec)

    return open_
