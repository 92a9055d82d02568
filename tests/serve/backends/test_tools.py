"""Tool calling for local models: parsing hand-written replies, choosing and rendering the
functions (system section or the template's own `tools`), and streaming that never shows a
tool call as text."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest

from luodi.errors import BadInputError
from luodi.serve.backends.base import GenRequest, StreamDelta, StreamEnd
from luodi.serve.backends.scheduler import Job, Reply
from luodi.serve.backends.tools import (
    parse_tool_calls,
    prepare_messages,
    select_tools,
    template_supports_tools,
    visible_text,
)
from luodi.serve.backends.transformers import TransformersBackend

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
NAMES = frozenset({"get_weather", "get_time"})


def test_parse_blocks_bare_json_and_leave_bad_calls_as_text() -> None:
    text, calls = parse_tool_calls(
        '<tool_call>{"name": "get_weather", "arguments": {"city": "北京"}}</tool_call>', NAMES
    )
    assert text == "" and [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "北京"})
    ]
    assert calls[0].id.startswith("call_") and "北京" in calls[0].arguments  # not \u escapes
    reply = (
        "Let me check.\n"
        '<tool_call>{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}</tool_call>\n'
        '<tool_call>{"name": "get_time", "parameters": {}}'  # unclosed at the end: still a call
    )
    text, calls = parse_tool_calls(reply, NAMES)
    assert text == "Let me check."
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {}),
    ]
    assert calls[0].id != calls[1].id
    for bare in (
        '{"name": "get_time", "arguments": {}}',
        '```json\n{"name": "get_time", "arguments": {}}\n```',
    ):
        text, calls = parse_tool_calls(bare, NAMES)
        assert (text, [c.name for c in calls]) == ("", ["get_time"])
    for bad in (
        '<tool_call>{"name": "get_weather", "arguments": {city: Paris}}</tool_call>',  # JSON
        '<tool_call>{"name": "launch_rocket", "arguments": {}}</tool_call>',  # unknown name
        '<tool_call>["get_time"]</tool_call>',  # not an object
        '{"name": "launch_rocket", "arguments": {}}',
        '{"city": "Paris"}',
        "The answer is 42.",
    ):
        assert parse_tool_calls(bad, NAMES) == (bad, [])
    # One good call among bad ones: the good one is taken, the bad one stays text.
    mixed = (
        '<tool_call>{"name": "nope", "arguments": {}}</tool_call>'
        '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>'
    )
    text, calls = parse_tool_calls(mixed, NAMES)
    assert text == '<tool_call>{"name": "nope", "arguments": {}}</tool_call>'
    assert [c.name for c in calls] == ["get_time"]


def test_tool_choice_selects_the_functions() -> None:
    assert select_tools(None, None) is None and select_tools([], "auto") is None
    assert select_tools([WEATHER, TIME], "none") is None
    auto = select_tools([WEATHER, TIME], "auto")
    assert auto is not None and auto.names == NAMES and not auto.required
    req = select_tools([WEATHER, TIME], "required")
    assert req is not None and req.required
    named = select_tools([WEATHER, TIME], {"type": "function", "function": {"name": "get_time"}})
    assert named is not None and named.names == {"get_time"} and named.required
    assert named.schemas() == [TIME]
    with pytest.raises(BadInputError, match="get_weather, get_time"):
        select_tools([WEATHER, TIME], {"type": "function", "function": {"name": "nope"}})
    with pytest.raises(BadInputError, match="tools\\[1\\]"):
        select_tools([WEATHER, {"type": "retrieval"}], "auto")
    with pytest.raises(BadInputError):
        select_tools([WEATHER], "sometimes")
    with pytest.raises(BadInputError, match="needs tools"):
        select_tools(None, "required")


def test_rendering_without_template_support() -> None:
    toolset = select_tools([WEATHER, TIME], "required")
    history = [
        {"role": "system", "content": "You are the office assistant."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in "},
                {"type": "text", "text": "Paris?"},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18°C, sunny"},
    ]
    out = prepare_messages(history, toolset, native=False)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user"]
    system = out[0]["content"]
    assert system.startswith("You are the office assistant.")
    assert "get_weather" in system and "get_time" in system and "<tool_call>" in system
    assert "Current weather of a city" in system and "must call" in system
    assert out[1]["content"] == "Weather in Paris?"
    block = out[2]["content"]
    assert block.startswith("<tool_call>") and json.loads(block[11:-12]) == {
        "name": "get_weather",
        "arguments": {"city": "Paris"},
    }
    assert out[3]["content"] == "Tool result (get_weather): 18°C, sunny"
    # Without a system message the section becomes one; without tools there is none.
    assert prepare_messages(history[1:2], toolset, native=False)[0]["role"] == "system"
    assert prepare_messages(history[1:2], None, native=False) == [out[1]]
    with pytest.raises(BadInputError, match="messages\\[0\\]"):
        prepare_messages([{"role": "robot", "content": "x"}], None, native=False)
    with pytest.raises(BadInputError, match="image_url"):
        prepare_messages(
            [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
            None,
            native=False,
        )


TOOLS_TEMPLATE = (
    "{%- if tools -%}{{- '<|im_start|>system\\nTOOLS: ' + (tools | map(attribute='function') "
    "| map(attribute='name') | join(',')) + '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- for message in messages -%}{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}{% generation %}{{- message['content'] + "
    "'<|im_end|>' -}}{% endgeneration %}{%- else -%}{{- message['content'] + '<|im_end|>' -}}"
    "{%- endif -%}{{- '\\n' -}}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def test_local_backend_renders_tools_natively_or_in_a_system_section(random_lm: Any) -> None:
    model, tok = random_lm
    assert template_supports_tools(TOOLS_TEMPLATE) and not template_supports_tools(
        tok.chat_template
    )

    def prompt(backend: TransformersBackend, **kw: Any) -> str:
        req = GenRequest(messages=[{"role": "user", "content": "Weather?"}], prompt=None, **kw)
        ids, _ = backend.encode_request(req)
        return backend.tokenizer.decode(ids)

    plain = TransformersBackend(model, tok, ref="random", max_batch=1)
    text = prompt(plain, tools=[WEATHER, TIME])
    assert "get_weather" in text and "get_time" in text and "<tool_call>" in text
    assert "get_weather" not in prompt(plain, tools=[WEATHER], tool_choice="none")
    only = prompt(
        plain,
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    assert "get_time" in only and "get_weather" not in only
    asyncio.run(plain.aclose())

    native_tok = copy.deepcopy(tok)
    native_tok.chat_template = TOOLS_TEMPLATE
    native = TransformersBackend(model, native_tok, ref="random", max_batch=1)
    assert native.native_tools
    text = prompt(native, tools=[WEATHER, TIME])
    assert text.startswith("<|im_start|>system\nTOOLS: get_weather,get_time<|im_end|>")
    assert "<tool_call>" not in text  # the template described them its own way
    asyncio.run(native.aclose())


def _events(job: Job, loop: asyncio.AbstractEventLoop) -> list[Any]:
    loop.run_until_complete(asyncio.sleep(0))  # deliver what Reply posted
    out = []
    while not job.queue.empty():
        out.append(job.queue.get_nowait())
    return out


def test_streamed_replies_hide_tool_calls_and_stop_strings() -> None:
    loop = asyncio.new_event_loop()
    try:
        req = GenRequest(messages=[], prompt=None, stop=["END"], tools=[WEATHER])
        job = Job(req=req, payload=None, key=None, loop=loop, tools=select_tools([WEATHER], None))
        reply = Reply(job)
        call = '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
        shown: list[str] = []
        for end in range(1, len("Checking. " + call) + 1):
            reply.update(("Checking. " + call)[:end])
            shown += [e.text for e in _events(job, loop) if isinstance(e, StreamDelta)]
        assert "".join(shown) == "Checking. "  # nothing of the call leaked, not even "<"
        result = reply.finish("stop", 20)
        events = _events(job, loop)
        assert isinstance(events[-1], StreamEnd) and events[-1].result == result
        assert result.finish_reason == "tool_calls" and result.text == "Checking."
        assert [c.name for c in result.tool_calls] == ["get_weather"]

        # Plain text with a stop string: its start is held back until it is known.
        job = Job(req=req, payload=None, key=None, loop=loop)
        reply = Reply(job)
        assert not reply.update("abc E")
        assert [e.text for e in _events(job, loop)] == ["abc "]
        assert not reply.update("abc EN!")
        assert [e.text for e in _events(job, loop)] == ["EN!"]
        assert reply.update("abc EN! xEND and more")
        assert [e.text for e in _events(job, loop)] == [" x"]
        result = reply.finish("length", 9)
        assert (result.text, result.finish_reason) == ("abc EN! x", "stop")
    finally:
        loop.close()
    assert visible_text("Hi <tool") == "Hi " and visible_text('  {"name"') == ""
    assert visible_text("a < b") == "a < b"
