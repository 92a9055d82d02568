"""The OpenAI embeddings protocol."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class EmbeddingRequest(BaseModel):
    """POST /v1/embeddings."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, description="The embedding deployment to call.")
    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="A text or a list of texts (token arrays are not served)."
    )
    encoding_format: Literal["float", "base64"] = Field(
        default="float", description="float lists, or base64 of little-endian float32."
    )
    dimensions: int | None = Field(default=None, ge=1, description="Only the model's own size.")
    user: str | None = Field(default=None, description="End-user id.")

    @field_validator("input")
    @classmethod
    def _texts(cls, v: object) -> list[str]:
        texts = [v] if isinstance(v, str) else list(v)  # type: ignore[arg-type]
        if not texts:
            raise ValueError("input must not be empty")
        if not all(isinstance(t, str) for t in texts):
            raise ValueError("token arrays are not supported: send text")
        if any(not t for t in texts):
            raise ValueError("input texts must not be empty strings")
        return texts
