"""POST /v1/completions (thin)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from luodi.serve.auth import Principal
from luodi.serve.completions.schemas import CompletionRequest
from luodi.serve.completions.service import ENDPOINT, CompletionService
from luodi.serve.deps import admitted, gateway_of


def make_router() -> APIRouter:
    router = APIRouter(tags=["completions"])

    @router.post("/v1/completions", summary="Create a completion", response_model=None)
    async def completions(
        body: CompletionRequest,
        request: Request,
        principal: Principal = Depends(admitted(ENDPOINT)),
    ) -> JSONResponse | StreamingResponse:
        return await CompletionService(gateway_of(request)).create(body, request, principal)

    return router
