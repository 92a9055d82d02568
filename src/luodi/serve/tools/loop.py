"""The bounded tool loop: the model asks for server-side tools, the gateway runs them, the
model answers with their results.

Each round offers the model the client's tools and the deployment's server-side tools. When
the reply calls server-side tools only, the gateway runs them (concurrently, each within
`timeout_s` and the whole phase within `total_timeout_s`), appends the assistant's calls and one
tool message per call to the conversation, and asks again. A reply with no tool call, or one
that calls a tool the CLIENT offered, goes back to the client as it is (server calls in the
same reply are dropped: the client could not send their results back). After `max_calls`
server-side calls, or once the phase's time is up, calls beyond the budget get an "error: not
run" result and the next round offers no server-side tools, so the model must answer with what
it has. Tool failures are results the model reads ("error: ..."), never a failed request.

Every call that ran is logged on the request (`on_call`): name, masked arguments, duration,
ok/error and result size.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from luodi.serve.backends.base import GenRequest, GenResult, ToolCall
from luodi.serve.tools.box import ToolBox
from luodi.serve.tools.spec import ToolLoop

Generate = Callable[[GenRequest], Awaitable[GenResult]]
GuardResult = Callable[[str], str | None]
"""A tool result -> the text the model may see, or None when the guard withholds it."""

WITHHELD = "error: the gateway's guard policy withheld this result"


def _limit_note(settings: ToolLoop) -> str:
    return (
        f"error: not run: the limit of {settings.max_calls} tool calls or "
        f"{settings.total_timeout_s:g} s of tool time for this request is reached; answer "
        "with the results you have"
    )


def _openai_call(c: ToolCall) -> dict[str, Any]:
    return {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}


async def run_tools(
    req: GenRequest,
    box: ToolBox,
    settings: ToolLoop,
    generate: Generate,
    on_call: Callable[[dict[str, Any]], None],
    guard_result: GuardResult | None = None,
) -> GenResult:
    """The model's final reply to `req` after running the server-side tools it asked for.

    `req.tools` are the client's tools (None for none); `generate` asks the model once;
    `on_call` gets each executed call's log record (with its `round`); `guard_result` screens
    tool results before the model sees them.
    """
    client_tools = list(req.tools or [])
    offered = client_tools + box.schemas()
    messages = list(req.messages or [])
    used = 0
    deadline = time.monotonic() + settings.total_timeout_s
    rounds = 0
    with box.lease():
        while True:
            open_ = used < settings.max_calls and time.monotonic() < deadline
            if open_:
                r = replace(req, messages=messages, tools=offered, tool_choice=req.tool_choice)
            else:  # the budget is spent: only the client's tools remain
                r = replace(
                    req,
                    messages=messages,
                    tools=client_tools or None,
                    tool_choice=req.tool_choice if client_tools else None,
                )
            result = await generate(r)
            if not result.tool_calls:
                return result
            theirs = [c for c in result.tool_calls if c.name not in box]
            if theirs:
                return replace(result, tool_calls=theirs, finish_reason="tool_calls")
            if not open_:  # server tools were not offered, yet the model insists: stop here
                return replace(result, tool_calls=[], finish_reason="stop")
            rounds += 1
            runnable = result.tool_calls[: settings.max_calls - used]
            used += len(runnable)
            remaining = max(0.001, deadline - time.monotonic())
            timeout = min(settings.timeout_s, remaining)
            done = await asyncio.gather(*(box.execute(c, timeout) for c in runnable))
            tool_messages = []
            outcomes = [*done, *[None] * (len(result.tool_calls) - len(done))]
            for c, ex in zip(result.tool_calls, outcomes, strict=True):
                if ex is None:
                    text = _limit_note(settings)
                else:
                    text = ex.text
                    if ex.ok and guard_result is not None:
                        screened = guard_result(text)
                        if screened is None:
                            text = WITHHELD
                            ex.record |= {"ok": False, "error": "withheld by the guard"}
                        else:
                            text = screened
                    on_call(ex.record | {"round": rounds})
                tool_messages.append({"role": "tool", "tool_call_id": c.id, "content": text})
            assistant = {
                "role": "assistant",
                "content": result.text or "",
                "tool_calls": [_openai_call(c) for c in result.tool_calls],
            }
            messages = [*messages, assistant, *tool_messages]


__all__ = ["run_tools"]
