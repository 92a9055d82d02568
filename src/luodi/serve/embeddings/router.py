"""POST /v1/embeddings (thin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from luodi.serve.auth import Principal
from luodi.serve.deps import admitted, gateway_of
from luodi.serve.embeddings.schemas import EmbeddingRequest
from luodi.serve.embeddings.service import ENDPOINT, EmbeddingService


def make_router() -> APIRouter:
    router = APIRouter(tags=["embeddings"])

    @router.post("/v1/embeddings", summary="Create embeddings")
    async def embeddings(
        body: EmbeddingRequest,
        request: Request,
        principal: Principal = Depends(admitted(ENDPOINT)),
    ) -> dict[str, Any]:
        return await EmbeddingService(gateway_of(request)).create(body, request, principal)

    return router
