"""Grounded answers: the prompt with numbered sources, and the citations returned with it.

Pure functions shared by the gateway (a deployment with knowledge bases) and `luodi ask`:
`ground(messages, retrieved, settings)` puts the retrieved chunks, numbered, into the system
message with an instruction to answer only from them and cite them as [n]; `citations(...)`
is what the response carries. When nothing relevant was retrieved the caller answers with
`settings.not_found` instead of letting the model invent an answer.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")

ZH_TEMPLATE = (
    "请只根据下面编号的资料回答用户的问题，并在用到的句子后用 [编号] 标明出处。"
    "如果资料中没有答案，就直接说资料中没有相关信息，不要编造。\n\n资料：\n{sources}"
)
EN_TEMPLATE = (
    "Answer the user's question using only the numbered sources below, and cite the sources "
    "you use as [n] after each sentence. If the sources do not contain the answer, say so "
    "plainly instead of guessing.\n\nSources:\n{sources}"
)


# Dense cosine below which a chunk counts as unrelated, per embedder, when a deployment sets no
# min_score. Calibrated by bench/bench_retrieval.py on the sample questions plus 12 off-topic
# ones: the highest threshold at which >= 95% of the answerable questions are still answered
# and hit@4 stays >= 95% of its unthresholded value, in hybrid and in dense mode.
# e5 (42 questions): answering chunks' cosines 0.78-0.92, off-topic best hits 0.73-0.85 (e5's
# cosines sit in a narrow band), so 0.80 refuses only half of the off-topic questions; 0.81
# leaves 12% of the questions unanswered in dense mode. minilm (the 13 English questions;
# it cannot read Chinese): off-topic best hits 0.13-0.19, answerable best hits >= 0.21.
# A heuristic all the same: set `min_score` per deployment from `luodi kb search` on your own
# questions.
DEFAULT_MIN_SCORE = {"e5": 0.8, "minilm": 0.19}


def min_score_for(embedder: str, explicit: float | None) -> float | None:
    """The relevance threshold to use: the explicit one, else the embedder's default."""
    return explicit if explicit is not None else DEFAULT_MIN_SCORE.get(embedder)


class RagSettings(BaseModel):
    """How a deployment (or `luodi ask`) grounds answers in knowledge bases."""

    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(default=4, ge=1, le=50, description="Chunks put into the prompt.")
    mode: Literal["dense", "lexical", "hybrid"] = Field(
        default="hybrid", description="Retrieval: dense, lexical, or both fused."
    )
    min_score: float | None = Field(
        default=None,
        description="Dense-cosine relevance threshold (see luodi.rag.retrieve); default: the "
        "embedder's (e5 0.8, minilm 0.19; other embedders keep every candidate).",
    )
    template: str | None = Field(
        default=None,
        description="System prompt with a {sources} slot. Default: Chinese for a question with "
        "Chinese characters, English otherwise.",
    )
    not_found: str = Field(
        default="抱歉，知识库中没有找到与这个问题相关的内容。 / Sorry, the knowledge base has "
        "nothing on this question.",
        description="The reply when nothing relevant is retrieved (the model is not asked).",
    )
    max_chars_per_source: int = Field(
        default=1200, ge=100, description="Longer chunks are cut to this in the prompt."
    )


def question_of(messages: list[dict[str, Any]]) -> str:
    """The text retrieval runs on: the last user message."""
    for m in reversed(messages):
        if m.get("role") == "user" and str(m.get("content") or "").strip():
            return str(m["content"])
    return ""


def _label(hit: Any) -> str:
    c = hit.chunk
    where = [c.source]
    if c.section:
        where.append(c.section)
    if c.page is not None:
        where.append(f"p.{c.page}")
    return " · ".join(where)


def sources_block(retrieved: list[Any], max_chars: int) -> str:
    """The numbered sources: `[n] (source · section · page)` then the chunk text."""
    parts = []
    for i, hit in enumerate(retrieved, 1):
        text = hit.chunk.text
        if len(text) > max_chars:
            text = text[:max_chars] + "…"
        parts.append(f"[{i}] ({_label(hit)})\n{text}")
    return "\n\n".join(parts)


def ground(
    messages: list[dict[str, Any]], retrieved: list[Any], settings: RagSettings
) -> list[dict[str, Any]]:
    """`messages` with the grounding instruction and numbered sources as (the start of) the
    system message; the conversation itself is unchanged."""
    question = question_of(messages)
    template = settings.template or (ZH_TEMPLATE if _CJK.search(question) else EN_TEMPLATE)
    system = template.format(sources=sources_block(retrieved, settings.max_chars_per_source))
    if messages and messages[0].get("role") == "system":
        head = {"role": "system", "content": f"{messages[0]['content']}\n\n{system}"}
        return [head, *messages[1:]]
    return [{"role": "system", "content": system}, *messages]


def citations(retrieved: list[Any], kb_of: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """What a grounded response cites: per source number, the knowledge base, document,
    section, page, chunk id and retrieval score."""
    out = []
    for i, hit in enumerate(retrieved, 1):
        c = hit.chunk
        out.append(
            {
                "index": i,
                "knowledge_base": (kb_of or {}).get(c.id),
                "document": c.source,
                "doc_id": c.doc_id,
                "section": c.section,
                "page": c.page,
                "chunk_id": c.id,
                "score": round(float(hit.score), 6),
            }
        )
    return out
