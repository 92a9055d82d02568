"""POST /v1/feedback: a rating (any scale), a correction and/or a comment on a response."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from luodi.serve.auth import Principal
from luodi.serve.deps import admitted, gateway_of
from luodi.serve.usage import add_feedback


class FeedbackRequest(BaseModel):
    """Feedback on one response, by its request id (the response's `id`)."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=200, description="The response's id.")
    rating: int | float | str | bool | None = Field(
        default=None,
        description="Any scale: 1–5 stars, 0–1, 0–100, 👍/👎, 赞/踩, ★★★☆☆, '4/5'; stored 0–1.",
    )
    scale: str = Field(
        default="auto",
        description="The rating's scale when a number is ambiguous: auto, 0-1, 1-5, 1-10, "
        "0-10, 0-100, -1-1, thumbs.",
    )
    correction: str | None = Field(default=None, description="What the answer should have been.")
    comment: str | None = Field(default=None, description="Anything else.")


def make_router() -> APIRouter:
    router = APIRouter(tags=["feedback"])

    @router.post("/v1/feedback", summary="Rate or correct a response")
    async def feedback(
        body: FeedbackRequest,
        request: Request,
        principal: Principal = Depends(admitted("feedback")),
    ) -> dict[str, Any]:
        gw = gateway_of(request)
        info = await asyncio.to_thread(
            add_feedback,
            gw.store,
            body.request_id,
            rating=body.rating,
            correction=body.correction,
            comment=body.comment,
            key=principal,
            scale=body.scale,
            recorder=gw.deps.recorder,
        )
        gw.note_feedback(body.request_id, info.rating)  # the canary guard's feedback signal
        return {"object": "feedback", **info.model_dump(mode="json")}

    return router
