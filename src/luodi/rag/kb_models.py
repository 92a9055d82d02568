"""What knowledge bases are made of: their config, documents, versions and change reports.

These are the typed results `luodi.rag.kb` returns (the CLI prints them, the API returns them);
`luodi.rag.kb` re-exports every name here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from luodi.rag.chunk import ChunkConfig
from luodi.store.artifacts import check_name

KIND = "knowledge_base"
"""The artifact kind of knowledge-base versions."""

DEFAULT_KB_EMBEDDER = "e5"
"""Knowledge bases embed with multilingual-e5 unless told otherwise: the company's documents
are mostly Chinese, and questions come in both languages."""

FORMAT = 1
"""Version of the on-disk layout written in kb.json (raised when the layout changes)."""


class KBConfig(BaseModel):
    """How a knowledge base reads, chunks, embeds and indexes its documents."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Knowledge-base name (letters, digits, '_', '.', '-').")
    team: str = Field(
        default="default",
        description="The team that owns it: only that team's API keys (and admins) see it.",
    )
    embedder: str = Field(
        default=DEFAULT_KB_EMBEDDER,
        description="Embedder: e5 (Chinese + English), minilm (English), a local "
        "sentence-transformers folder, or openai:http://host:port/v1#MODEL.",
    )
    chunk: ChunkConfig = Field(
        default_factory=ChunkConfig, description="Chunk size, overlap and unit."
    )
    index: Literal["faiss", "milvus"] = Field(
        default="faiss", description="Vector index: faiss (in-process) or milvus (milvus-lite)."
    )
    pii_mask: bool = Field(
        default=True,
        description="Mask e-mails, phones, IDs, bank cards and IPs in documents before they "
        "are chunked, embedded and stored.",
    )
    pii_allow: list[str] = Field(
        default_factory=list,
        description="Strings never masked, e.g. the company's public hotline or service mailbox.",
    )
    description: str | None = Field(default=None, description="What the documents are about.")

    @field_validator("name", "team")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)


class DocInfo(BaseModel):
    """One document of a knowledge base: where it came from and what it became."""

    doc_id: str = Field(description="Stable id: sha256 of the source name [:16].")
    source: str = Field(
        description="Name it is cited by: the file name, or its path under the folder it was "
        "added with."
    )
    path: str = Field(description="The file it was read from (lineage), or upload:KEY/NAME.")
    sha256: str = Field(description="sha256 of the file's bytes.")
    format: str = Field(description="File suffix, e.g. .pdf.")
    tags: list[str] = Field(default_factory=list, description="Tags for retrieval filters.")
    segments: int = Field(description="Text segments read (pages, heading sections, rows).")
    chunks: int = Field(description="Chunks it was cut into.")
    chars: int = Field(description="Characters of text after cleaning.")
    pii_masked: dict[str, int] = Field(
        default_factory=dict, description="PII masked in it, per type."
    )
    problems: list[str] = Field(
        default_factory=list, description="Parts of the file skipped while reading (where: why)."
    )
    added_in: int = Field(description="The version that added this content.")


class Skipped(BaseModel):
    """A file (or document reference) that was not used, and why."""

    file: str = Field(description="The file or document as given.")
    reason: str = Field(description="Why it was skipped.")


class KBInfo(BaseModel):
    """One knowledge-base version."""

    ref: str = Field(description="NAME:vN.")
    name: str = Field(description="Knowledge-base name.")
    version: int = Field(description="Version number.")
    team: str = Field(description="Owning team.")
    embedder: str = Field(description="Embedder that made its vectors.")
    dim: int = Field(description="Vector dimensions.")
    index: str = Field(description="Vector index kind.")
    documents: int = Field(description="Documents in it.")
    chunks: int = Field(description="Chunks in it.")
    description: str | None = Field(default=None, description="What it is about.")
    parent: str | None = Field(default=None, description="The previous version (NAME:vN).")
    content_hash: str = Field(description="sha256 of its files.")
    created_at: datetime = Field(description="When this version was made (UTC).")
    created_by: str = Field(description="Who made it (OS user, or the API key's name).")
    change: dict[str, Any] = Field(
        default_factory=dict,
        description="What made it: op (create/add/delete/rebuild), documents added/removed, "
        "chunks embedded.",
    )


class KBChange(BaseModel):
    """The result of a change: the new version and what changed."""

    kb: KBInfo = Field(
        description="The version the change made (the current one when nothing changed)."
    )
    changed: bool = Field(default=True, description="False when nothing changed (no version).")
    added: list[DocInfo] = Field(default_factory=list, description="Documents added or updated.")
    replaced: list[str] = Field(
        default_factory=list, description="Sources whose earlier content the change replaced."
    )
    removed: list[str] = Field(default_factory=list, description="Sources removed.")
    skipped: list[Skipped] = Field(default_factory=list, description="Files not used, and why.")
    chunks_added: int = Field(default=0, description="Chunks new in this version.")
    chunks_removed: int = Field(default=0, description="Chunks gone from the previous version.")
    chunks_embedded: int = Field(
        default=0,
        description="Chunks embedded by this change; unchanged chunks keep their vectors.",
    )
    chunks_reused: int = Field(
        default=0, description="Chunks of added/updated documents whose vectors were kept."
    )


class KBDetail(BaseModel):
    """A version with its config, documents and the history of the knowledge base."""

    kb: KBInfo = Field(description="The version shown.")
    config: KBConfig = Field(description="Its config.")
    documents: list[DocInfo] = Field(description="Its documents.")
    versions: list[KBInfo] = Field(description="Every version of the knowledge base, oldest first.")
