"""Embeddings through the gateway's call path."""

from __future__ import annotations

import base64

import numpy as np
from fastapi import Request

from luodi.errors import BadInputError
from luodi.serve import inference as I
from luodi.serve.auth import Principal
from luodi.serve.embeddings.schemas import EmbeddingRequest
from luodi.serve.gateway import Gateway

ENDPOINT = "embeddings"
MAX_INPUTS = 2048


class EmbeddingService:
    """POST /v1/embeddings."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def create(
        self, body: EmbeddingRequest, request: Request, principal: Principal
    ) -> dict[str, object]:
        texts: list[str] = body.input  # type: ignore[assignment] - validated to a list of str
        call = self.gw.open_call(request, principal, ENDPOINT, body.model, body.user)
        try:
            if len(texts) > MAX_INPUTS:
                raise BadInputError(f"{len(texts)} inputs; the limit is {MAX_INPUTS}")
            I.check_chars(sum(len(t) for t in texts), self.gw.config.limits)
            with call.route.lease() as backend:
                vectors, tokens = await backend.embed(texts)
            dim = len(vectors[0]) if vectors else 0
            if body.dimensions is not None and body.dimensions != dim:
                raise BadInputError(f"this model gives {dim} dimensions, not {body.dimensions}")
        except BaseException as exc:
            self.gw.fail(call, exc)
            raise
        call.prompt_tokens = tokens
        call.prompt_text = texts[0] if len(texts) == 1 else f"[{len(texts)} texts] {texts[0]}"
        call.finish(200)
        data = []
        for i, v in enumerate(vectors):
            emb: object = (
                base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode()
                if body.encoding_format == "base64"
                else [float(x) for x in v]
            )
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return {
            "object": "list",
            "data": data,
            "model": body.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "luodi": I.luodi_field(call),
        }
