"""Completions: plain prompts through the gateway's call path to a backend."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from luodi.serve import inference as I
from luodi.serve.auth import Principal
from luodi.serve.backends.base import GenRequest
from luodi.serve.completions.schemas import CompletionRequest
from luodi.serve.gateway import Call, Gateway

ENDPOINT = "completions"


class CompletionService:
    """POST /v1/completions."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    def _requests(self, body: CompletionRequest, call: Call) -> tuple[list[GenRequest], bool]:
        limits = self.gw.config.limits
        I.check_n(body.n * len(body.prompts), limits)
        I.check_chars(sum(len(p) for p in body.prompts), limits)
        prompts, blocked = [], False
        for p in body.prompts:
            text, hit = call.check("input", p)
            prompts.append(text)
            blocked = blocked or hit
        call.prompt_text = prompts[0] if len(prompts) == 1 else json.dumps(prompts)
        base = GenRequest(
            messages=None,
            prompt=prompts[0],
            max_tokens=I.max_tokens_for(body.max_tokens, call.deployment, limits),
            temperature=body.temperature,
            top_p=body.top_p,
            stop=list(body.stop or []),
            seed=body.seed,
            user=body.user or call.principal.key_id,
        )
        reqs = [
            replace(base, prompt=p, seed=None if base.seed is None else base.seed + k)
            for p in prompts
            for k in range(body.n)
        ]
        return reqs, blocked

    async def create(
        self, body: CompletionRequest, request: Request, principal: Principal
    ) -> JSONResponse | StreamingResponse:
        call = self.gw.open_call(request, principal, ENDPOINT, body.model, body.user)
        with I.recording_failure(call):
            reqs, blocked = self._requests(body, call)
        return await I.respond(
            call,
            obj="text_completion",
            model=body.model,
            stream=body.stream,
            chunks=lambda: self._stream(body, call, reqs, blocked),
            choices=lambda: self._complete(call, reqs, blocked),
        )

    async def _complete(
        self, call: Call, reqs: list[GenRequest], blocked: bool
    ) -> list[dict[str, Any]]:
        if blocked:
            call.response_text = I.refusal(call)
            return [
                {"index": i, "text": I.refusal(call), "finish_reason": "content_filter",
                 "logprobs": None}
                for i in range(len(reqs))
            ]  # fmt: skip
        results = await asyncio.gather(*(I.generate(call, r) for r in reqs))
        choices = []
        for i, result in enumerate(results):
            text, finish = I.guarded_result(call, result)
            call.response_text += text
            choices.append({"index": i, "text": text, "finish_reason": finish, "logprobs": None})
        return choices

    async def _stream(
        self, body: CompletionRequest, call: Call, reqs: list[GenRequest], blocked: bool
    ) -> AsyncIterator[bytes]:
        head = {
            "id": call.request_id,
            "object": "text_completion",
            "created": I.now(),
            "model": body.model,
            "system_fingerprint": call.version,
        }

        def chunk(i: int, text: str, finish: str | None, **extra: Any) -> bytes:
            choice = {"index": i, "text": text, "finish_reason": finish, "logprobs": None}
            return I.sse(head | {"choices": [choice]} | extra)

        for i, req in enumerate(reqs):
            if blocked:
                call.response_text += I.refusal(call)
                yield chunk(i, I.refusal(call), "content_filter", luodi=I.luodi_field(call))
                continue
            with call.route.lease() as backend:
                first = True
                async for text, finish in I.guarded_stream(call, backend.stream(req)):
                    extra = {"luodi": I.luodi_field(call)} if first else {}
                    first = False
                    yield chunk(i, text, finish, **extra)
        if body.stream_options and body.stream_options.include_usage:
            yield I.sse(head | {"choices": [], "usage": I.usage(call)})
