"""The checks a cascade composite runs to decide that the domain model's answer is not good
enough and the general model should answer instead.

Two signals are real here (the serving engines do not report token log-probabilities, so a
confidence threshold on them cannot be checked):
- `retrieval` (before the domain model is asked, when a knowledge base is configured): the
  question's best dense cosine in the knowledge base is below `min_score` (default: the
  embedder's relevance threshold, luodi.rag.answer.DEFAULT_MIN_SCORE), i.e. the domain's
  documents know nothing about it — the general model answers and the domain model is not
  asked at all;
- `markers` (after the domain model answered): its reply is empty or contains a refusal or
  uncertainty marker ("我不确定", "无法回答", "I don't know", ...; case-insensitive).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_MARKERS: tuple[str, ...] = (
    "我不知道",
    "我不确定",
    "不太清楚",
    "无法回答",
    "无法确定",
    "没有相关信息",
    "资料中没有",
    "抱歉，我不",
    "i don't know",
    "i do not know",
    "i'm not sure",
    "i am not sure",
    "cannot answer",
    "can't answer",
    "no information",
)


class CascadeSettings(BaseModel):
    """When a cascade composite falls back from the domain model to the general model."""

    model_config = ConfigDict(extra="forbid")

    markers: list[str] = Field(
        default_factory=lambda: list(DEFAULT_MARKERS),
        description="Refusal/uncertainty phrases: a domain reply containing one falls back "
        "(case-insensitive). An empty domain reply always falls back.",
    )
    knowledge_base: str | None = Field(
        default=None,
        description="Knowledge base (NAME:vN, resolved at create) for the retrieval check; "
        "None: no retrieval check.",
    )
    min_score: float | None = Field(
        default=None,
        description="Dense cosine the question's best chunk must reach; default: the "
        "knowledge base embedder's relevance threshold (e5 0.8, minilm 0.3).",
    )


class CascadeCheck:
    """The cascade's checks over a store (the knowledge base is opened on first use)."""

    def __init__(self, store: Any, settings: CascadeSettings) -> None:
        self.store, self.settings = store, settings
        self._markers = [m.lower() for m in settings.markers if m.strip()]

    def before(self, question: str) -> str | None:
        """Why the general model should answer without asking the domain model (the
        retrieval check), or None."""
        kb_ref = self.settings.knowledge_base
        if kb_ref is None or not question.strip():
            return None
        from luodi.rag.answer import min_score_for
        from luodi.rag.kb_search import open_kb
        from luodi.rag.retrieve import RetrieveConfig

        kb = open_kb(self.store, kb_ref)
        floor = min_score_for(kb.info.embedder, self.settings.min_score)
        if floor is None or kb.retriever is None:
            return None
        hits = kb.search(question, RetrieveConfig(mode="dense", top_k=1))
        best = hits[0].dense if hits and hits[0].dense is not None else -1.0
        if best < floor:
            return f"retrieval: best dense score {best:.3f} in {kb_ref} is below {floor}"
        return None

    def after(self, reply: str) -> str | None:
        """Why the domain model's reply is not kept (empty, a marker), or None."""
        if not reply.strip():
            return "markers: empty reply"
        low = reply.lower()
        for m in self._markers:
            if m in low:
                return f"markers: the reply contains {m!r}"
        return None
