"""Tool (function) calling for local models: offering functions in the prompt, reading calls back.

Local engines share this so a model answers tool requests the same way on transformers and
llama.cpp. A chat template that takes `tools` (it uses the variable) gets them natively, with
tool messages and assistant tool calls as it expects them. Otherwise the functions are
described in a system section asking for `<tool_call>{"name": ..., "arguments": {...}}
</tool_call>`, past assistant calls are written in that form and tool results become user turns
("Tool result (name): ..."). Replies are parsed for those blocks, or a reply that is one bare
JSON object with a name and arguments; a block naming an unknown function or holding invalid
JSON stays text.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from luodi.errors import BadInputError
from luodi.serve.backends.base import ToolCall

TOOL_OPEN = "<tool_call>"
TOOL_CLOSE = "</tool_call>"
ROLES = frozenset({"system", "user", "assistant", "tool"})
_BLOCK = re.compile(re.escape(TOOL_OPEN) + r"(.*?)(?:" + re.escape(TOOL_CLOSE) + r"|\Z)", re.S)
_FENCE = re.compile(r"\A```(?:json)?\s*(.*?)\s*```\Z", re.S)


@dataclass(frozen=True)
class ToolSet:
    """The functions offered to the model for one request (after tool_choice)."""

    functions: tuple[dict[str, Any], ...]
    """OpenAI `function` objects: name, description, parameters."""
    required: bool
    """tool_choice "required" or a named function: the model is told it must call one."""

    @property
    def names(self) -> frozenset[str]:
        """Names of the functions offered."""
        return frozenset(str(f["name"]) for f in self.functions)

    def schemas(self) -> list[dict[str, Any]]:
        """The functions as OpenAI tool schemas (what chat templates take as `tools`)."""
        return [{"type": "function", "function": dict(f)} for f in self.functions]


def _function(tool: Any, i: int) -> dict[str, Any]:
    fn = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not fn:
        raise BadInputError(f"tools[{i}] is not a function tool: expected type 'function'")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise BadInputError(f"tools[{i}].function needs a name")
    return fn


def select_tools(tools: list[dict[str, Any]] | None, tool_choice: Any) -> ToolSet | None:
    """The functions a request offers, or None when tools are off.

    tool_choice None/"auto" offers all, "required" all and says one must be called, a named
    {"type": "function", "function": {"name": N}} only N (required), "none" none.
    BadInputError for malformed tools, an unknown tool_choice or a name not among the tools.
    """
    functions = tuple(_function(t, i) for i, t in enumerate(tools or []))
    if tool_choice in (None, "auto"):
        return ToolSet(functions, required=False) if functions else None
    if tool_choice == "none":
        return None
    if not functions:
        raise BadInputError(f"tool_choice {tool_choice!r} needs tools")
    if tool_choice == "required":
        return ToolSet(functions, required=True)
    name = None
    if isinstance(tool_choice, dict):
        fn = tool_choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str):
        raise BadInputError(
            "tool_choice must be 'none', 'auto', 'required' or "
            '{"type": "function", "function": {"name": ...}}'
        )
    chosen = tuple(f for f in functions if f["name"] == name)
    if not chosen:
        known = ", ".join(str(f["name"]) for f in functions)
        raise BadInputError(f"tool_choice names {name!r}, which is not among the tools ({known})")
    return ToolSet(chosen, required=True)


@lru_cache(maxsize=32)
def template_supports_tools(template: str | None) -> bool:
    """Whether a Jinja chat template uses the `tools` variable (renders tool definitions)."""
    if not template:
        return False
    import jinja2
    from jinja2 import meta

    env = jinja2.Environment(extensions=["jinja2.ext.loopcontrols"])
    # transformers' {% generation %} tag is unknown to plain Jinja: it does not matter here.
    source = re.sub(r"\{%-?\s*(end)?generation\s*-?%\}", "", template)
    try:
        return "tools" in meta.find_undeclared_variables(env.parse(source))
    except jinja2.TemplateError:
        return False


def message_text(content: Any, where: str = "message") -> str:
    """Plain text of an OpenAI message content: a string, None, or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise BadInputError(f"{where} has a {kind!r} part; this model reads text only")
        return "".join(texts)
    raise BadInputError(f"{where} content must be text or a list of text parts")


def tool_system_prompt(toolset: ToolSet) -> str:
    """The system section describing the functions and how to call them."""
    lines = [
        "You can call these functions (JSON Schema of each function's arguments):",
        *(
            json.dumps(
                {k: f[k] for k in ("name", "description", "parameters") if f.get(k) is not None},
                ensure_ascii=False,
            )
            for f in toolset.functions
        ),
        "To call a function, reply with only:",
        TOOL_OPEN + '{"name": "<function name>", "arguments": {<arguments as JSON>}}' + TOOL_CLOSE,
    ]
    if toolset.required:
        lines.append("You must call one of these functions now.")
    return "\n".join(lines)


def _call_text(call: dict[str, Any]) -> str:
    fn = call.get("function") or {}
    args: Any = fn.get("arguments") or "{}"
    try:
        args = json.loads(args) if isinstance(args, str) else args
    except json.JSONDecodeError:
        pass  # shown as the text it was
    body = json.dumps({"name": fn.get("name"), "arguments": args}, ensure_ascii=False)
    return TOOL_OPEN + body + TOOL_CLOSE


def _native_call(call: dict[str, Any]) -> dict[str, Any]:
    """An assistant tool call with JSON-text arguments as a dict (what templates render)."""
    fn = dict(call.get("function") or {})
    if isinstance(fn.get("arguments"), str):
        try:
            fn["arguments"] = json.loads(fn["arguments"])
        except json.JSONDecodeError:
            pass
    return {**call, "type": "function", "function": fn}


def prepare_messages(
    messages: list[dict[str, Any]], toolset: ToolSet | None, *, native: bool
) -> list[dict[str, Any]]:
    """Messages ready for a chat template: plain-text content, roles checked.

    With `native` (the template takes `tools`) tool calls and tool messages are kept for the
    template (call arguments as dicts). Otherwise the functions are described in the system
    message (added first when there is none), past calls become `<tool_call>` text and tool
    results user turns naming the function. BadInputError for an unknown role or non-text
    content, naming the message.
    """
    out: list[dict[str, Any]] = []
    names_by_id: dict[str, str] = {}
    for i, m in enumerate(messages):
        role = "system" if m.get("role") == "developer" else m.get("role")
        if role not in ROLES:
            raise BadInputError(
                f"messages[{i}] has role {m.get('role')!r}; expected system, user, assistant "
                "or tool"
            )
        text = message_text(m.get("content"), f"messages[{i}]")
        calls = m.get("tool_calls") or []
        for c in calls:
            names_by_id[str(c.get("id"))] = str((c.get("function") or {}).get("name"))
        if native:
            msg: dict[str, Any] = {"role": role, "content": text}
            if calls:
                msg["tool_calls"] = [_native_call(c) for c in calls]
            for key in ("name", "tool_call_id"):
                if m.get(key):
                    msg[key] = m[key]
            out.append(msg)
        elif role == "tool":
            name = m.get("name") or names_by_id.get(str(m.get("tool_call_id"))) or "tool"
            out.append({"role": "user", "content": f"Tool result ({name}): {text}"})
        elif calls:
            blocks = "\n".join(_call_text(c) for c in calls)
            out.append({"role": role, "content": f"{text}\n{blocks}" if text else blocks})
        else:
            out.append({"role": role, "content": text})
    if toolset is not None and not native:
        section = tool_system_prompt(toolset)
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{section}".lstrip()}
        else:
            out.insert(0, {"role": "system", "content": section})
    return out


def new_call_id() -> str:
    """A fresh tool call id, "call_" and 24 hex digits."""
    return "call_" + secrets.token_hex(12)


def _as_call(body: str, names: frozenset[str]) -> ToolCall | None:
    """The call a JSON text describes, or None (invalid JSON, unknown function, bad shape)."""
    try:
        obj = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or obj.get("name") not in names:
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    if not isinstance(args, dict):
        return None
    return ToolCall(
        id=new_call_id(), name=str(obj["name"]), arguments=json.dumps(args, ensure_ascii=False)
    )


def parse_tool_calls(text: str, names: frozenset[str]) -> tuple[str, list[ToolCall]]:
    """(the reply's text without its tool calls, the calls) of a model reply.

    Calls are `<tool_call>{json}</tool_call>` blocks (a last block left unclosed counts too),
    or, when there is no block, the whole reply being one JSON object (optionally in a ```json
    fence) with "name" and "arguments". A block that is not valid JSON or names a function
    outside `names` stays in the text.
    """
    calls: list[ToolCall] = []
    if TOOL_OPEN in text:

        def take(m: re.Match[str]) -> str:
            call = _as_call(m.group(1).strip(), names)
            if call is None:
                return m.group(0)
            calls.append(call)
            return ""

        rest = _BLOCK.sub(take, text)
        return (rest.strip() if calls else text), calls
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    if body.startswith("{") and body.endswith("}"):
        call = _as_call(body, names)
        if call is not None:
            return "", [call]
    return text, []


def visible_text(text: str) -> str:
    """The prefix of a partial reply that can be streamed while tools are offered.

    Text from a `<tool_call>` marker on (or a partial marker at the end) is held back, and so
    is a reply that starts like a bare JSON call ("{" or a ``` fence), until the reply is
    complete and parsed.
    """
    head = text.lstrip()
    if head.startswith("{") or head.startswith("`"):
        return ""
    at = text.find(TOOL_OPEN)
    if at >= 0:
        return text[:at]
    for k in range(min(len(TOOL_OPEN) - 1, len(text)), 0, -1):
        if text.endswith(TOOL_OPEN[:k]):
            return text[:-k]
    return text


__all__ = [
    "TOOL_CLOSE",
    "TOOL_OPEN",
    "ToolSet",
    "message_text",
    "new_call_id",
    "parse_tool_calls",
    "prepare_messages",
    "select_tools",
    "template_supports_tools",
    "tool_system_prompt",
    "visible_text",
]
