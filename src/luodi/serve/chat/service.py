"""Chat completions: the conversation through the gateway's call path to a backend."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from luodi.errors import BadInputError
from luodi.rag.answer import citations, ground, question_of
from luodi.serve import inference as I
from luodi.serve import rag
from luodi.serve.auth import Principal
from luodi.serve.backends.base import GenRequest, GenResult
from luodi.serve.chat.schemas import ChatCompletionRequest
from luodi.serve.gateway import Call, Gateway
from luodi.serve.tools.box import ToolBox
from luodi.serve.tools.loop import GuardResult, run_tools

ENDPOINT = "chat.completions"


def _merge_system(system: str | None, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The deployment's system prompt first; the client's own system text follows it."""
    if not system:
        return messages
    if messages and messages[0]["role"] == "system":
        head = {"role": "system", "content": f"{system}\n\n{messages[0]['content']}"}
        return [head, *messages[1:]]
    return [{"role": "system", "content": system}, *messages]


def _toolbox(call: Call, req: GenRequest) -> ToolBox | None:
    """The deployment's server-side tools when this request may use tools at all."""
    box = getattr(call.deployment, "tools", None)
    if box is None or req.tool_choice == "none":
        return None
    return box


def _screen(call: Call) -> GuardResult | None:
    """The guard over tool results (the input policy: injection through a tool), or None."""
    policy = call.deployment.guard
    if policy is None or not call.deployment.spec.tool_loop.guard_results:
        return None

    def screen(text: str) -> str | None:
        verdict = policy.check_input(text)
        call.note_verdict("tool_result", verdict)
        return None if verdict.action == "block" else verdict.text

    return screen


def _tool_calls(result: GenResult) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in result.tool_calls
    ]


class ChatService:
    """POST /v1/chat/completions."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def _prepare(
        self, body: ChatCompletionRequest, call: Call
    ) -> tuple[GenRequest, tuple[str, str] | None]:
        """The backend request, and the fixed reply (text, finish_reason) when the model is
        not asked: the input guard blocked it, or the knowledge bases hold nothing on it."""
        limits = self.gw.config.limits
        if len(body.messages) > limits.max_messages:
            raise BadInputError(
                f"{len(body.messages)} messages; the limit is {limits.max_messages}"
            )
        I.check_n(body.n, limits)
        messages = [m.to_backend() for m in body.messages]
        I.check_chars(sum(len(m["content"]) for m in messages), limits)
        if not any(m["role"] == "user" for m in messages):
            raise BadInputError("messages need at least one user message")
        blocked = False
        for m in messages:
            if m["role"] == "user":
                m["content"], hit = call.check("input", m["content"])
                blocked = blocked or hit
        messages = _merge_system(call.deployment.spec.system_prompt, messages)
        canned = (I.refusal(call), "content_filter") if blocked else None
        spec = call.deployment.spec
        if spec.knowledge_bases and canned is None:
            hits, kb_of = await rag.retrieve(call, question_of(messages))
            if hits:
                messages = ground(messages, hits, spec.rag)
                call.citations = citations(hits, kb_of)
            else:
                canned = (spec.rag.not_found, "stop")
        call.prompt_text = json.dumps(messages, ensure_ascii=False)
        tools = [t.model_dump() for t in body.tools] if body.tools else None
        box = getattr(call.deployment, "tools", None)
        if box is not None and tools:
            clash = sorted({t["function"]["name"] for t in tools} & set(box.names))
            if clash:
                raise BadInputError(
                    f"tools {', '.join(clash)} are server-side tools of {spec.name}; the gateway "
                    "runs them itself: rename yours"
                )
        req = GenRequest(
            messages=messages,
            prompt=None,
            max_tokens=I.max_tokens_for(body.max_tokens, call.deployment, limits),
            temperature=body.temperature,
            top_p=body.top_p,
            stop=list(body.stop or []),
            seed=body.seed,
            tools=tools if body.tool_choice != "none" else None,
            tool_choice=body.tool_choice,
            user=body.user or call.principal.key_id,
        )
        return req, canned

    async def create(
        self, body: ChatCompletionRequest, request: Request, principal: Principal
    ) -> JSONResponse | StreamingResponse:
        call = self.gw.open_call(request, principal, ENDPOINT, body.model, body.user)
        with I.recording_failure(call):
            req, canned = await self._prepare(body, call)
        return await I.respond(
            call,
            obj="chat.completion",
            model=body.model,
            stream=body.stream,
            chunks=lambda: self._stream(body, call, req, canned),
            choices=lambda: self._complete(body, call, req, canned),
        )

    async def _answer(self, call: Call, req: GenRequest) -> GenResult:
        """The model's reply; with server-side tools, after the tool loop ran them."""
        box = _toolbox(call, req)
        if box is None:
            return await I.generate(call, req)
        return await run_tools(
            req,
            box,
            call.deployment.spec.tool_loop,
            lambda r: I.generate(call, r),
            call.tools_executed.append,
            guard_result=_screen(call),
        )

    def _variants(self, body: ChatCompletionRequest, req: GenRequest) -> list[GenRequest]:
        from dataclasses import replace

        if body.n == 1:
            return [req]
        return [
            replace(req, seed=None if req.seed is None else req.seed + i) for i in range(body.n)
        ]

    async def _complete(
        self,
        body: ChatCompletionRequest,
        call: Call,
        req: GenRequest,
        canned: tuple[str, str] | None,
    ) -> list[dict[str, Any]]:
        if canned is not None:
            text, finish = canned
            call.response_text = text
            return [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                    "logprobs": None,
                }
                for i in range(body.n)
            ]
        results = await asyncio.gather(*(self._answer(call, r) for r in self._variants(body, req)))
        choices = []
        for i, result in enumerate(results):
            message: dict[str, Any] = {"role": "assistant", "content": None}
            if result.tool_calls:
                message["tool_calls"] = _tool_calls(result)
                finish = "tool_calls"
                call.response_text += json.dumps(message["tool_calls"], ensure_ascii=False)
            else:
                message["content"], finish = I.guarded_result(call, result)
                call.response_text += message["content"]
            choices.append(
                {"index": i, "message": message, "finish_reason": finish, "logprobs": None}
            )
        return choices

    async def _stream(
        self,
        body: ChatCompletionRequest,
        call: Call,
        req: GenRequest,
        canned: tuple[str, str] | None,
    ) -> AsyncIterator[bytes]:
        head = {
            "id": call.request_id,
            "object": "chat.completion.chunk",
            "created": I.now(),
            "model": body.model,
            "system_fingerprint": call.version,
        }

        def chunk(i: int, delta: dict[str, Any], finish: str | None, **extra: Any) -> bytes:
            choice = {"index": i, "delta": delta, "finish_reason": finish, "logprobs": None}
            return I.sse(head | {"choices": [choice]} | extra)

        for i, variant in enumerate(self._variants(body, req)):
            if canned is None and (variant.tools or _toolbox(call, variant)):
                # a reply may be a tool call: decided once it is complete; server-side tools
                # run first, so the first chunk's `luodi` field lists them
                async for piece in self._tool_stream(call, variant, i, chunk):
                    yield piece
                continue
            yield chunk(i, {"role": "assistant", "content": ""}, None, luodi=I.luodi_field(call))
            if canned is not None:
                call.response_text += canned[0]
                yield chunk(i, {"content": canned[0]}, None)
                yield chunk(i, {}, canned[1])
                continue
            with call.route.lease() as backend:
                async for text, finish in I.guarded_stream(call, backend.stream(variant)):
                    if text:
                        yield chunk(i, {"content": text}, None)
                    if finish:
                        yield chunk(i, {}, finish)
        if body.stream_options and body.stream_options.include_usage:
            yield I.sse(head | {"choices": [], "usage": I.usage(call)})

    async def _tool_stream(
        self, call: Call, req: GenRequest, i: int, chunk: Any
    ) -> AsyncIterator[bytes]:
        result = await self._answer(call, req)
        call.first_token()
        yield chunk(i, {"role": "assistant", "content": ""}, None, luodi=I.luodi_field(call))
        if result.tool_calls:
            calls = [dict(c, index=k) for k, c in enumerate(_tool_calls(result))]
            call.response_text += json.dumps(calls, ensure_ascii=False)
            yield chunk(i, {"tool_calls": calls}, None)
            yield chunk(i, {}, "tool_calls")
            return
        text, finish = I.guarded_result(call, result)
        call.response_text += text
        yield chunk(i, {"content": text}, None)
        yield chunk(i, {}, finish)


__all__ = ["ChatService"]
