"""POST /v1/chat/completions (thin: the service does the work)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from luodi.serve.auth import Principal
from luodi.serve.chat.schemas import ChatCompletionRequest
from luodi.serve.chat.service import ENDPOINT, ChatService
from luodi.serve.deps import admitted, gateway_of


def make_router() -> APIRouter:
    router = APIRouter(tags=["chat"])

    @router.post("/v1/chat/completions", summary="Create a chat completion", response_model=None)
    async def chat_completions(
        body: ChatCompletionRequest,
        request: Request,
        principal: Principal = Depends(admitted(ENDPOINT)),
    ) -> JSONResponse | StreamingResponse:
        return await ChatService(gateway_of(request)).create(body, request, principal)

    return router
