"""Request bodies of the knowledge-base API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from luodi.rag.chunk import ChunkConfig
from luodi.rag.kb_models import DEFAULT_KB_EMBEDDER


class KBCreate(BaseModel):
    """POST /v1/knowledge-bases: a new, empty knowledge base."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Knowledge-base name.")
    team: str | None = Field(
        default=None,
        description="Owning team (default: the key's; only an admin may name another).",
    )
    embedder: str = Field(
        default=DEFAULT_KB_EMBEDDER,
        description="A registered embedder (e5, minilm); a local folder or an openai: endpoint "
        "only by an admin.",
    )
    chunk: ChunkConfig = Field(default_factory=ChunkConfig, description="Chunking.")
    index: Literal["faiss", "milvus"] = Field(default="faiss", description="Vector index.")
    pii_mask: bool = Field(default=True, description="Mask PII in the documents.")
    pii_allow: list[str] = Field(default_factory=list, description="Strings never masked.")
    description: str | None = Field(default=None, description="What it holds.")


class KBSearch(BaseModel):
    """POST /v1/knowledge-bases/{name}/search."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, description="What to look for.")
    top_k: int = Field(default=5, ge=1, le=100, description="How many chunks to return.")
    mode: Literal["dense", "lexical", "hybrid"] = Field(
        default="hybrid", description="dense, lexical, or both fused by reciprocal rank."
    )
    min_score: float | None = Field(
        default=None, description="Relevance threshold (default: the retriever's)."
    )
    documents: list[str] | None = Field(
        default=None, description="Only these documents (ids or source names)."
    )
    tags: list[str] | None = Field(default=None, description="Only documents with these tags.")


class ChunkChange(BaseModel):
    """New chunking for a rebuild: the fields given replace the knowledge base's."""

    model_config = ConfigDict(extra="forbid")

    size: int | None = Field(default=None, ge=1, description="New maximum chunk length.")
    overlap: int | None = Field(default=None, ge=0, description="New overlap.")
    unit: Literal["chars", "tokens"] | None = Field(default=None, description="New unit.")


class KBRebuild(BaseModel):
    """POST /v1/knowledge-bases/{name}/rebuild: re-chunk and re-embed every document into a
    new version; what is left out stays as the newest version has it."""

    model_config = ConfigDict(extra="forbid")

    embedder: str | None = Field(
        default=None,
        description="Re-embed with this embedder (a registered one; a local folder or an "
        "openai: endpoint only by an admin). Default: the one it was built with.",
    )
    chunk: ChunkChange | None = Field(default=None, description="New chunking.")
    index: Literal["faiss", "milvus"] | None = Field(default=None, description="New index.")
