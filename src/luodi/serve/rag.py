"""Retrieval for deployments with knowledge bases: search each attached knowledge base for the
user's question, keep the best chunks, and hand them to luodi.rag.answer for the prompt."""

from __future__ import annotations

import asyncio
from typing import Any

from luodi.errors import BadInputError
from luodi.rag.answer import RagSettings, min_score_for
from luodi.serve.gateway import Call


def _search(
    store: Any, refs: list[str], team: str, question: str, s: RagSettings
) -> tuple[list[Any], dict[str, str]]:
    from luodi.rag.kb import open_kb
    from luodi.rag.retrieve import RetrieveConfig

    hits: list[Any] = []
    kb_of: dict[str, str] = {}
    for ref in refs:
        kb = open_kb(store, ref)
        if kb.info.team != team:
            raise BadInputError(
                f"knowledge base {ref!r} belongs to team {kb.info.team!r}, not the deployment's "
                f"team {team!r}"
            )
        threshold = min_score_for(kb.config.embedder, s.min_score)
        cfg = RetrieveConfig(mode=s.mode, top_k=s.top_k, min_score=threshold)
        for h in kb.search(question, cfg):
            hits.append(h)
            kb_of[h.chunk.id] = kb.info.ref
    hits.sort(key=lambda h: h.score, reverse=True)
    return hits[: s.top_k], kb_of


async def retrieve(call: Call, question: str) -> tuple[list[Any], dict[str, str]]:
    """The chunks to ground the answer in (best first) and their knowledge base versions; the
    chunk ids go to the request log."""
    spec = call.deployment.spec
    hits, kb_of = await asyncio.to_thread(
        _search, call.gateway.store, spec.knowledge_bases, spec.team, question, spec.rag
    )
    call.retrieved = [h.chunk.id for h in hits]
    return hits, kb_of
