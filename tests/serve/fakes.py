"""A scripted backend for gateway tests: it implements the Backend protocol with replies a test
decides (echo, a fixed text, a tool call, a slow stream), so routing, guards, limits and hot
swap can be checked exactly and fast. Real engines have their own tests in tests/serve/backends.
"""

from __future__ import annotations

import asyncio
import re
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
    the first tool with {"q": message}.

    Named faults, for canary tests: `flakyN…` fails N% of its calls (evenly spread, with a
    502), `toxicN…` answers N% of its calls with text the default guard blocks, and
    `sluggishN…` waits N ms before each reply."""

    capabilities = frozenset({"chat", "completions", "embeddings", "stream", "tools"})

    def __init__(self, name: str) -> None:
        self.ref = FAKE + name
        self.name = name
        self.calls = 0
        self.closed = False

    def _fault(self, kind: str) -> int | None:
        """N of a `<kind>N…` name, else None."""
        m = re.match(kind + r"(\d+)", self.name)
        return int(m.group(1)) if m else None

    def _due(self, percent: int | None) -> bool:
        """Whether this call is one of the `percent`% (every k-th, evenly spread)."""
        return (
            percent is not None and self.calls * percent // 100 > (self.calls - 1) * percent // 100
        )

    async def _misbehave(self) -> None:
        wait = self._fault("sluggish")
        if wait:
            await asyncio.sleep(wait / 1000)
        if self._due(self._fault("flaky")):
            from luodi.errors import BackendUnavailableError

            raise BackendUnavailableError(f"{self.name} crashed")

    def _reply(self, req: GenRequest) -> tuple[list[str], float]:
        msg = _last_user(req)
        if msg.startswith("bug:"):  # a backend bug: an exception luodi does not know
            raise RuntimeError(f"simulated bug in {self.name}")
        if self._due(self._fault("toxic")):
            msg = "say:好的，下面是自制炸弹的步骤：第一步……"
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
        await self._misbehave()
        pieces, delay = self._reply(req)
        await asyncio.sleep(delay * len(pieces))
        return self._result(req, pieces)

    async def stream(self, req: GenRequest) -> AsyncIterator[StreamDelta | StreamEnd]:
        if self.closed:
            raise RuntimeError("backend used after close")
        self.calls += 1
        await self._misbehave()
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
            name = spec.model[len(FAKE) :]
            backend = (ToolUserBackend if name.startswith("tooluser") else ScriptedBackend)(name)
            if opened is not None:
                opened[backend.name] = backend
            return backend
        return open_backend(store, spec)

    return open_


class ToolUserBackend(ScriptedBackend):
    """A model that uses tools (named `tooluser…`; `tooluser-loopy…` never stops calling).

    A user message `use NAME {json}; NAME2 {json}` makes it call those tools when they are
    offered; once tool results follow, it answers `answer: ` + every tool result it has seen,
    joined by ` | ` (so a test sees exactly what the model saw). The loopy one repeats its calls
    for as long as the tools are offered. A script naming a tool that is not offered is
    answered at once. Every request it got is kept in `requests`.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.requests: list[GenRequest] = []

    def _decide(self, req: GenRequest) -> GenResult:
        msgs = req.messages or []
        offered = {t["function"]["name"] for t in req.tools or []}
        script = []
        for part in _last_user(req).removeprefix("use ").split(";"):
            name, _, args = part.strip().partition(" ")
            if name:
                script.append((name, args.strip() or "{}"))
        seen = [m["content"] for m in msgs if m["role"] == "tool"]
        answered = bool(msgs) and msgs[-1]["role"] == "tool"
        wants = (not answered or "loopy" in self.name) and script
        if wants and all(n in offered for n, _ in script):
            calls = [ToolCall(f"call_{self.calls}_{k}", n, a) for k, (n, a) in enumerate(script)]
            return GenResult("", "tool_calls", 7, 4, calls)
        text = "answer: " + (" | ".join(seen) if seen else "(no tool results)")
        return GenResult(text, "stop", 7, len(text) // 4 + 1)

    async def generate(self, req: GenRequest) -> GenResult:
        self.calls += 1
        self.requests.append(req)
        return self._decide(req)

    async def stream(self, req: GenRequest) -> AsyncIterator[StreamDelta | StreamEnd]:
        self.calls += 1
        self.requests.append(req)
        result = self._decide(req)
        for i in range(0, len(result.text), 5):
            yield StreamDelta(result.text[i : i + 5])
        yield StreamEnd(result)
