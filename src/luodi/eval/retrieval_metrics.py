"""Scoring a retriever against gold passages, and grounded answers against their sources.

The pure scoring half of the `retrieval` eval task (luodi.eval.tasks.retrieval, which reads
the records and calls the target); the retrieval benchmark (bench/bench_retrieval.py) scores
its naive baseline with the same functions, so both are measured the same way.

Gold passages: a `Gold` holds a question, its reference answer, the passages that answer it
and the documents (source names) holding them. Matching ignores whitespace (PDF and text files
break lines inside sentences) and applies the knowledge base's text cleaning (NFKC) to the
passage; a passage holding PII is masked in the knowledge base and cannot match.

A passage is *found at rank r* when the chunks ranked 1..r of its document together contain it
(the chunks' character spans cover every non-space character of one of its occurrences), so
any chunking can be scored, including passages that a chunk boundary cuts. Per mode (dense,
lexical, hybrid; luodi.rag.retrieve, with no relevance threshold: these are rank metrics):
`MODE.hit@k` (1 when a gold passage is found within the top k), `MODE.recall@k` (the share of
the gold passages found within the top k) and `MODE.mrr` (1 / the first rank at which a gold
passage is found, 0 when none is within the deepest k).

Faithfulness: an answer's sentences (split at 。！？；!?, ". " and newlines, citation marks [n]
removed) are each *supported* when their token F1 (luodi.eval.metrics.token_f1, CJK text per
character) against the best-matching sentence of the cited sources reaches a threshold; the
sources cited are those the answer names as [n], or every source given when it names none.

This module imports nothing from luodi.eval.tasks (that package imports it).
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from luodi.eval import metrics as M
from luodi.progress import Progress

Mode = Literal["dense", "lexical", "hybrid"]
MODES: tuple[Mode, ...] = ("dense", "lexical", "hybrid")
# Retrieved chunks kept per mode in each item of results.json (enough to see what won).
SHOWN_HITS = 5
_SENTENCE = re.compile(r"(?<=[。！？；!?;])|(?<=\.)\s+|\n+")
_CITE = re.compile(r"[\[【]\s*(\d+(?:\s*[,，、]\s*\d+)*)\s*[\]】]")
# The same cut as luodi.eval.tasks.base.preview (not imported: see the module docstring).
_PREVIEW = 60


def _mean(values: Sequence[float]) -> float:
    """Arithmetic mean; 0.0 for no values (as luodi.eval.tasks.base.mean)."""
    return float(sum(values) / len(values)) if values else 0.0


def _short(text: str, limit: int = _PREVIEW) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


# -- gold passages --------------------------------------------------------------------------
@dataclass(frozen=True)
class Gold:
    """What a record says answers its question."""

    question: str
    answer: str
    passages: list[str]
    documents: list[str]
    qid: str | None
    tags: list[str]


def squash(text: str) -> str:
    """`text` cleaned as knowledge bases clean documents, without any whitespace."""
    from luodi.rag.kb_docs import clean_text

    return "".join(clean_text(text).split())


class DocText:
    """One document rebuilt from its chunks (each an exact slice of the document's text at its
    offsets), indexed by non-space character so passages match across line breaks."""

    def __init__(self, chunks: Sequence[Any]) -> None:
        size = max((c.end for c in chunks), default=0)
        chars = [" "] * size
        for c in chunks:
            chars[c.start : c.end] = c.text
        self.positions = [i for i, ch in enumerate(chars) if not ch.isspace()]
        self.squashed = "".join(chars[i] for i in self.positions)

    def find(self, passage: str) -> list[tuple[int, int]]:
        """Every occurrence of the squashed `passage`, as [lo, hi) in non-space positions."""
        needle, out, at = squash(passage), [], 0
        if not needle:
            return out
        while (at := self.squashed.find(needle, at)) >= 0:
            out.append((at, at + len(needle)))
            at += 1
        return out

    def span(self, chunk: Any) -> tuple[int, int]:
        """The non-space positions [lo, hi) that `chunk` covers."""
        lo = bisect.bisect_left(self.positions, chunk.start)
        return lo, bisect.bisect_left(self.positions, chunk.end)


Occurrence = tuple[str, int, int]  # (doc id, lo, hi) in that document's DocText


class GoldIndex:
    """A knowledge base's documents rebuilt from `chunks` (id -> Chunk), to locate passages."""

    def __init__(self, chunks: dict[str, Any]) -> None:
        by_doc: dict[str, list[Any]] = defaultdict(list)
        for c in chunks.values():
            by_doc[c.doc_id].append(c)
        self.sources = {d: cs[0].source for d, cs in by_doc.items()}
        self.texts = {d: DocText(cs) for d, cs in by_doc.items()}

    def docs_named(self, name: str) -> list[str]:
        """Doc ids whose source is `name`, ends with "/name", or has `name` as file name."""
        return [
            d
            for d, s in self.sources.items()
            if name in (s, Path(s).name) or s.endswith("/" + name)
        ]

    def locate(self, gold: Gold) -> list[list[Occurrence]] | str:
        """Each passage's occurrences in the gold documents, or why one cannot be found."""
        docs = [d for name in gold.documents for d in self.docs_named(name)]
        if not docs:
            return f"document {', '.join(map(repr, gold.documents))} is not in the knowledge base"
        out: list[list[Occurrence]] = []
        for p in gold.passages:
            occ = [(d, lo, hi) for d in docs for lo, hi in self.texts[d].find(p)]
            if not occ:
                return (
                    f"passage {_short(p)!r} is not in {', '.join(gold.documents)} as the "
                    "knowledge base holds it (check the text, or PII masked in it)"
                )
            out.append(occ)
        return out

    def first_ranks(
        self, ranked: Sequence[Any], located: list[list[Occurrence]]
    ) -> list[int | None]:
        """Per passage, the first rank r at which chunks 1..r cover one of its occurrences
        (None when the ranking never does)."""
        out: list[int | None] = []
        for occurrences in located:
            need = [set(range(lo, hi)) for _, lo, hi in occurrences]
            found = None
            for rank, chunk in enumerate(ranked, 1):
                text = self.texts.get(chunk.doc_id)
                lo, hi = text.span(chunk) if text is not None else (0, 0)
                for (doc, _, _), left in zip(occurrences, need, strict=True):
                    if doc == chunk.doc_id:
                        left.difference_update(range(lo, hi))
                if any(not left for left in need):
                    found = rank
                    break
            out.append(found)
        return out


def rank_scores(ranks: Sequence[int | None], ks: Sequence[int], mode: str) -> dict[str, float]:
    """hit@k, recall@k and mrr of one question from its passages' first ranks."""
    hits = [r for r in ranks if r is not None]
    out: dict[str, float] = {}
    for k in ks:
        within = [r for r in hits if r <= k]
        out[f"{mode}.hit@{k}"] = float(bool(within))
        out[f"{mode}.recall@{k}"] = len(within) / len(ranks)
    top = min((r for r in hits if r <= max(ks)), default=None)
    out[f"{mode}.mrr"] = 1.0 / top if top is not None else 0.0
    return out


# -- faithfulness ---------------------------------------------------------------------------
def sentences(text: str) -> list[str]:
    """`text` cut into sentences (。！？；!?; ". " and newlines end one), stripped, non-empty."""
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


def cited_numbers(answer: str) -> list[int]:
    """The source numbers an answer cites as [n], [n, m] or 【n】, in order, once each."""
    out: dict[int, None] = {}
    for m in _CITE.finditer(answer):
        for n in re.split(r"\s*[,，、]\s*", m.group(1)):
            out[int(n)] = None
    return list(out)


def faithfulness_of(
    answer: str, sources: Sequence[str], threshold: float
) -> tuple[float, bool, list[dict[str, Any]]]:
    """(share of supported sentences, whether a valid source is cited, per-sentence detail).

    `sources` are the chunk texts given to the model, numbered from 1. A sentence is supported
    when its token F1 with the best sentence of the cited sources is >= `threshold`; with no
    valid citation every source counts as cited. An answer without a scorable sentence is 0.
    """
    cited = [n for n in cited_numbers(answer) if 1 <= n <= len(sources)]
    pool = [s for n in (cited or range(1, len(sources) + 1)) for s in sentences(sources[n - 1])]
    detail: list[dict[str, Any]] = []
    for sent in sentences(_CITE.sub(" ", answer)):
        if not M.cjk_tokens(sent):
            continue  # punctuation or a stray mark: nothing to support
        best = max((M.token_f1(sent, s) for s in pool), default=0.0)
        detail.append({"sentence": sent, "f1": round(best, 4), "supported": best >= threshold})
    share = sum(d["supported"] for d in detail) / len(detail) if detail else 0.0
    return share, bool(cited), detail


# -- scoring a retriever ---------------------------------------------------------------------
@dataclass
class Scored:
    """One question ranked in every mode: its candidates, passages' first ranks and scores."""

    gold: Gold
    located: list[list[Occurrence]]
    dense: list[Any]
    lexical: list[Any]
    scores: dict[str, float] = field(default_factory=dict)
    ranks: dict[str, list[int | None]] = field(default_factory=dict)
    shown: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def ranking(retriever: Any, q: Scored, cfg: Any) -> list[Any]:
    """What `retriever.search(question, cfg)` returns, from the candidates fetched once: each
    list cut to the depth that search would fetch."""
    n = max(cfg.candidates, cfg.top_k)
    return retriever.combine(q.gold.question, q.dense[:n], q.lexical[:n], cfg)


def score_retrieval(
    retriever: Any,
    index: GoldIndex,
    located: Sequence[tuple[Gold, list[list[Occurrence]]]],
    modes: Sequence[str],
    ks: Sequence[int],
    *,
    candidates: int = 50,
    rrf_k: int = 60,
    depth: int = 0,
    settings: dict[str, Any] | None = None,
    progress: Progress | None = None,
    label: str = "retrieval",
) -> list[Scored]:
    """Rank each located question with `retriever` (luodi.rag.retrieve.Retriever) in every
    mode and score it (hit@k, recall@k, mrr per mode; see the module docstring).

    Queries are embedded in one batch and each retriever is asked once, `depth` (at least
    `candidates` and max(ks)) deep; each mode's ranking equals `retriever.search` with
    top_k = max(ks), `candidates`, `rrf_k`, the other RetrieveConfig `settings` given (e.g.
    fusion, dense_weight, fuse_depth; the retriever's defaults otherwise) and no relevance
    threshold.
    """
    from luodi.rag.retrieve import RetrieveConfig

    top = max(ks)
    n = max(candidates, top, depth)
    questions = [g.question for g, _ in located]
    dense_all: list[list[Any]] = [[] for _ in located]
    if located and any(m != "lexical" for m in modes):
        found = retriever.vectors.search(retriever.embedder.embed_queries(questions), n)
        dense_all = [[h for h in hs if h.id in retriever.chunks] for hs in found]
    configs = {
        m: RetrieveConfig(
            mode=m, top_k=top, candidates=max(candidates, top), rrf_k=rrf_k, **(settings or {})
        )
        for m in modes
    }
    if progress is not None:
        progress(task=label, total=len(located), message="retrieving")
    out: list[Scored] = []
    for (gold, occ), dense in zip(located, dense_all, strict=True):
        lexical = [
            h for h in retriever.lexical.search(gold.question, n) if h.id in retriever.chunks
        ]
        q = Scored(gold, occ, dense, lexical)
        for mode, cfg in configs.items():
            ranked = ranking(retriever, q, cfg)
            q.ranks[mode] = index.first_ranks([r.chunk for r in ranked], occ)
            q.scores.update(rank_scores(q.ranks[mode], ks, mode))
            q.shown[mode] = [
                {"chunk_id": r.chunk.id, "source": r.chunk.source, "score": round(r.score, 6)}
                for r in ranked[:SHOWN_HITS]
            ]
        out.append(q)
        if progress is not None:
            progress(task=label, advance=1)
    return out


def metric_names(modes: Sequence[str], ks: Sequence[int]) -> list[str]:
    """The retrieval metrics of `modes` at cut-offs `ks`, in report order."""
    names = [f"{m}.{n}@{k}" for m in modes for n in ("hit", "recall") for k in ks]
    return names + [f"{m}.mrr" for m in modes]


def by_tag(scored: Sequence[Scored], modes: Sequence[str], ks: Sequence[int]) -> dict[str, Any]:
    """Items, hit@k (the largest k up to 5) and MRR per mode for the questions of each tag."""
    k = max([x for x in ks if x <= 5] or [min(ks)])
    groups: dict[str, list[dict[str, float]]] = defaultdict(list)
    for q in scored:
        for tag in q.gold.tags:
            groups[tag].append(q.scores)
    return {
        tag: {"items": len(rows)}
        | {
            f"{m}.{name}": _mean([r[f"{m}.{name}"] for r in rows])
            for m in modes
            for name in (f"hit@{k}", "mrr")
        }
        for tag, rows in sorted(groups.items())
    }
