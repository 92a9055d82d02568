"""Retrieval over a knowledge base's chunks: dense, lexical, or hybrid (the two fused), then
optional cross-encoder reranking.

Hybrid fusion (`fusion`, registered by name in `FUSIONS`) takes the top `fuse_depth`
candidates of each retriever (lexical ones only with BM25 > 0):
- "score" (the default): a convex combination of the two scores, each min-max normalised
  over its list: dense_weight * cos' + (1 - dense_weight) * bm25', a missing score counting 0
  (Bruch et al., "An Analysis of Fusion Functions for Hybrid Retrieval", TOIS 2023: it beats
  RRF and needs one weight, tuned on few queries);
- "rrf": reciprocal rank fusion, sum of 1 / (rrf_k + rank), which ignores how far apart
  the scores are.
Fusing only the top of each list matters: a chunk at rank 40 of both lists says little, but
RRF over 50 candidates lets such chunks outrank the top hit of a single list.

Relevance rule (`min_score`, a dense cosine):
- dense: a chunk is kept when its cosine >= min_score;
- lexical: min_score is not used; a chunk is kept when it shares an index term with the
  query (BM25 > 0), which is all a lexical hit can say;
- hybrid: a chunk is kept when its cosine >= min_score, or it is among the lexical top `top_k`
  (with BM25 > 0). Chunks that fail are dropped from the fused ranking, so a query about
  nothing in the knowledge base returns [] instead of the least-bad chunks. The rule reads
  the dense cosine, never the fused score: a fused score is relative to its query's
  candidates (the best one is always near 1) and says nothing about absolute relevance.
Filters (documents, tags) are applied inside the index searches, so `top_k` results come back
even when the filter leaves a small part of the knowledge base.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from luodi.errors import BadInputError, MissingDependencyError, NotFoundError
from luodi.rag.chunk import Chunk
from luodi.rag.embed import Embedder
from luodi.rag.index import Hit, LexicalIndex, VectorIndex
from luodi.registry import Registry


class RetrieveConfig(BaseModel):
    """How a query is answered from a knowledge base."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["dense", "lexical", "hybrid"] = Field(
        "hybrid",
        description="dense (embedding cosine), lexical (BM25), or hybrid (both, fused as "
        "`fusion` says).",
    )
    top_k: int = Field(5, ge=1, le=1000, description="Number of chunks returned at most.")
    min_score: float | None = Field(
        None,
        ge=-1.0,
        le=1.0,
        description="Dense cosine below which a chunk is not relevant (hybrid: a chunk must "
        "reach it on dense or rank in the lexical top_k with a positive score; lexical: "
        "unused). None keeps every candidate.",
    )
    fusion: Literal["score", "rrf"] = Field(
        "score",
        description="How hybrid fuses the two lists: score (weighted sum of min-max "
        "normalised scores) or rrf (reciprocal rank fusion).",
    )
    # 0.6: on the sample questions e5's hybrid is flat for 0.6-0.8 and minilm's (which cannot
    # read the Chinese documents, so BM25 must carry it) is better at 0.6 than at 0.7-0.8.
    dense_weight: float = Field(
        0.6,
        ge=0.0,
        le=1.0,
        description="Score fusion: weight of the normalised dense score (the lexical one gets "
        "1 - dense_weight).",
    )
    fuse_depth: int = Field(
        10,
        ge=1,
        le=10_000,
        description="Hybrid: how many of each retriever's best candidates are fused (and so "
        "what a reranker reorders).",
    )
    rrf_k: int = Field(60, ge=1, description="The k of reciprocal rank fusion: 1/(k + rank).")
    candidates: int = Field(
        50,
        ge=1,
        le=10_000,
        description="Chunks taken from each retriever (relevance rule, fusion, reranking).",
    )
    documents: list[str] | None = Field(
        None, description="Only chunks of these documents (doc ids or source names)."
    )
    tags: list[str] | None = Field(
        None, description="Only chunks of documents carrying at least one of these tags."
    )
    rerank: str | None = Field(
        None,
        description="A local cross-encoder folder (sentence-transformers CrossEncoder) that "
        "reorders the fused candidates.",
    )

    @model_validator(mode="after")
    def _lists_not_empty(self) -> RetrieveConfig:
        for name in ("documents", "tags"):
            if getattr(self, name) == []:
                raise ValueError(f"{name} filter is empty; leave it out to search everything")
        return self


@dataclass
class Retrieved:
    """One retrieved chunk; `score` is what it was ranked by (cosine, BM25, fused score, RRF
    or rerank)."""

    chunk: Chunk
    score: float
    dense: float | None
    """Its cosine when dense search returned it (None otherwise)."""
    lexical: float | None
    """Its BM25 score when lexical search returned it (None otherwise)."""
    rank: int
    """1-based position in the results."""


class Reranker(Protocol):
    """Scores (query, passage) pairs; higher is more relevant (CrossEncoder.predict)."""

    def predict(self, pairs: list[tuple[str, str]]) -> Sequence[float]: ...


def rrf(rankings: list[list[str]], k: int = 60) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: each id scores the sum of 1 / (k + rank) over the rankings it
    appears in (rank 1-based; an id repeated in one ranking counts at its first place).

    Returns (id, score) best first; ties keep the order in which ids were first seen.
    """
    scores: dict[str, float] = {}
    for ranking in rankings:
        seen: set[str] = set()
        for rank, i in enumerate(ranking, 1):
            if i in seen:
                continue
            seen.add(i)
            scores[i] = scores.get(i, 0.0) + 1.0 / (k + rank)
    order = {i: n for n, i in enumerate(scores)}
    return sorted(scores.items(), key=lambda item: (-item[1], order[item[0]]))


def minmax(hits: Sequence[Hit]) -> dict[str, float]:
    """Each hit's score mapped to [0, 1] over `hits` (the best 1, the worst 0; all 1 when the
    scores are equal). An id repeated in `hits` keeps its first (best) score."""
    out: dict[str, float] = {}
    if not hits:
        return out
    hi = max(h.score for h in hits)
    lo = min(h.score for h in hits)
    for h in hits:
        out.setdefault(h.id, (h.score - lo) / (hi - lo) if hi > lo else 1.0)
    return out


Fusion = Callable[[list[Hit], list[Hit], "RetrieveConfig"], list[tuple[str, float]]]
"""Fuses (dense hits, lexical hits, config) into (id, score) best first."""
FUSIONS: Registry[Fusion] = Registry("fusion")


@FUSIONS.register("rrf")
def fuse_rrf(dense: list[Hit], lexical: list[Hit], cfg: RetrieveConfig) -> list[tuple[str, float]]:
    """Reciprocal rank fusion of the two lists with `cfg.rrf_k`."""
    return rrf([[h.id for h in dense], [h.id for h in lexical]], cfg.rrf_k)


@FUSIONS.register("score")
def fuse_scores(
    dense: list[Hit], lexical: list[Hit], cfg: RetrieveConfig
) -> list[tuple[str, float]]:
    """dense_weight * minmax(cos) + (1 - dense_weight) * minmax(bm25); a chunk missing from
    a list scores 0 there. Ties keep the order of first appearance (dense, then lexical)."""
    w = cfg.dense_weight
    d, lx = minmax(dense), minmax(lexical)
    ids = list(dict.fromkeys([*d, *lx]))
    fused = {i: w * d.get(i, 0.0) + (1 - w) * lx.get(i, 0.0) for i in ids}
    order = {i: n for n, i in enumerate(ids)}
    return sorted(fused.items(), key=lambda item: (-item[1], order[item[0]]))


_RERANKERS: dict[str, Reranker] = {}
_RERANKERS_LOCK = threading.Lock()


def open_reranker(path: str) -> Reranker:
    """The sentence-transformers CrossEncoder in local folder `path` (opened once, shared).

    NotFoundError when the folder does not exist, BadInputError when it holds no model.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise NotFoundError(f"rerank model folder {folder} does not exist")
    key = str(folder.resolve())
    with _RERANKERS_LOCK:
        if key not in _RERANKERS:
            try:
                from sentence_transformers import CrossEncoder
            except ImportError as exc:  # pragma: no cover - a declared dependency
                raise MissingDependencyError(
                    f"reranking needs sentence-transformers ({exc})"
                ) from None
            try:
                _RERANKERS[key] = CrossEncoder(key, device="cpu", local_files_only=True)
            except Exception as exc:
                raise BadInputError(f"cannot load a cross-encoder from {folder}: {exc}") from None
        return _RERANKERS[key]


class Retriever:
    """Searches one knowledge base's chunks (see the module docstring for the rules)."""

    def __init__(
        self,
        chunks: dict[str, Chunk],
        doc_tags: dict[str, list[str]],
        embedder: Embedder,
        vectors: VectorIndex,
        lexical: LexicalIndex,
        open_reranker: Callable[[str], Reranker] = open_reranker,
    ) -> None:
        """`chunks` by id (the ids both indexes hold), `doc_tags` by doc id; the query is
        embedded with `embedder.embed_queries`. `open_reranker` turns `RetrieveConfig.rerank`
        into a reranker (replaceable, e.g. in tests)."""
        self.chunks = chunks
        self.doc_tags = doc_tags
        self.embedder = embedder
        self.vectors = vectors
        self.lexical = lexical
        self.open_reranker = open_reranker
        self._by_doc: dict[str, list[str]] = {}
        self._doc_names: dict[str, set[str]] = {}
        for cid, chunk in chunks.items():
            self._by_doc.setdefault(chunk.doc_id, []).append(cid)
            names = self._doc_names.setdefault(chunk.doc_id, {chunk.doc_id})
            names.update({chunk.source, Path(chunk.source).name})

    def allowed(self, cfg: RetrieveConfig) -> set[str] | None:
        """Chunk ids the filters of `cfg` leave (None: no filter).

        NotFoundError naming the values that match no document: a filter that can match
        nothing is a mistake, not an empty answer.
        """
        if cfg.documents is None and cfg.tags is None:
            return None
        docs = set(self._by_doc)
        if cfg.documents is not None:
            picked = {d for d, names in self._doc_names.items() if names & set(cfg.documents)}
            unknown = [
                n for n in cfg.documents if not any(n in s for s in self._doc_names.values())
            ]
            if unknown:
                known = sorted({Path(c.source).name for c in self.chunks.values()})
                raise NotFoundError(
                    f"no document {', '.join(map(repr, unknown))} in this knowledge base; it "
                    f"has: {', '.join(known[:20])}{' ...' if len(known) > 20 else ''}"
                )
            docs &= picked
        if cfg.tags is not None:
            wanted = set(cfg.tags)
            all_tags = {t for tags in self.doc_tags.values() for t in tags}
            unknown = sorted(wanted - all_tags)
            if unknown:
                raise NotFoundError(
                    f"no document is tagged {', '.join(map(repr, unknown))}; tags in use: "
                    f"{', '.join(sorted(all_tags)) or 'none'}"
                )
            docs &= {d for d in docs if wanted & set(self.doc_tags.get(d, []))}
        return {cid for d in docs for cid in self._by_doc[d]}

    def search(self, query: str, cfg: RetrieveConfig | None = None) -> list[Retrieved]:
        """The chunks that answer `query` best, at most `cfg.top_k`, best first.

        A blank query is BadInputError. Results whose chunk id is not in `chunks` (an index
        out of step with them) are skipped.
        """
        cfg = cfg or RetrieveConfig()
        if not isinstance(query, str) or not query.strip():
            raise BadInputError("the query is empty")
        allow = self.allowed(cfg)
        reranker = self.open_reranker(cfg.rerank) if cfg.rerank else None
        n = max(cfg.candidates, cfg.top_k)
        dense: list[Hit] = []
        lexical: list[Hit] = []
        if cfg.mode in ("dense", "hybrid"):
            dense = self.dense_hits(self.embedder.embed_queries([query]), n, allow)
        if cfg.mode in ("lexical", "hybrid"):
            lexical = [h for h in self.lexical.search(query, n, allow) if h.id in self.chunks]
        return self.combine(query, dense, lexical, cfg, reranker)

    def dense_hits(self, qvec, n: int, allow: set[str] | None) -> list[Hit]:
        """Dense candidates for one embedded query (exposed so callers can time embedding)."""
        return [h for h in self.vectors.search(qvec, n, allow)[0] if h.id in self.chunks]

    def combine(
        self,
        query: str,
        dense: list[Hit],
        lexical: list[Hit],
        cfg: RetrieveConfig,
        reranker: Reranker | None = None,
    ) -> list[Retrieved]:
        """Apply the relevance rule, fuse (hybrid), rerank, and cut to `top_k`."""
        cos = {h.id: h.score for h in dense}
        bm25 = {h.id: h.score for h in lexical}
        if cfg.mode == "dense":
            keep = [h for h in dense if cfg.min_score is None or h.score >= cfg.min_score]
            ranked = [(h.id, h.score) for h in keep]
        elif cfg.mode == "lexical":
            ranked = [(h.id, h.score) for h in lexical if h.score > 0]
        else:
            lexical_top = {h.id for h in lexical[: cfg.top_k] if h.score > 0}
            passing = None
            if cfg.min_score is not None:
                passing = {i for i, s in cos.items() if s >= cfg.min_score} | lexical_top
            depth = cfg.fuse_depth
            positive = [h for h in lexical if h.score > 0]
            fused = FUSIONS.get(cfg.fusion)(dense[:depth], positive[:depth], cfg)
            ranked = [(i, s) for i, s in fused if passing is None or i in passing]
        if reranker is not None and ranked:
            ranked = ranked[: max(cfg.candidates, cfg.top_k)]
            scores = reranker.predict([(query, self.chunks[i].text) for i, _ in ranked])
            if len(scores) != len(ranked):
                raise BadInputError(f"the reranker scored {len(scores)} of {len(ranked)} passages")
            order = sorted(range(len(ranked)), key=lambda j: -float(scores[j]))
            ranked = [(ranked[j][0], float(scores[j])) for j in order]
        return [
            Retrieved(self.chunks[i], float(s), cos.get(i), bm25.get(i), rank)
            for rank, (i, s) in enumerate(ranked[: cfg.top_k], 1)
        ]


__all__ = [
    "FUSIONS",
    "Fusion",
    "Reranker",
    "RetrieveConfig",
    "Retrieved",
    "Retriever",
    "fuse_rrf",
    "fuse_scores",
    "minmax",
    "open_reranker",
    "rrf",
]
