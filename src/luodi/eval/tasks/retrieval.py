"""`retrieval`: does a knowledge base find the passage that answers a question, and does the
model's grounded answer stay within what it found?

The dataset is a qa dataset (question = the last user message, reference answer = the last
assistant message) whose records carry their gold passages in `meta` (a .jsonl with these keys
ingested with `luodi data ingest FILE --kind qa` puts every key but question/answer there):

- `passage`: a string, or a list of strings, copied from the document as luodi's loaders read
  it (a table row, a sentence, a clause). Each is one relevant passage: a question whose answer
  needs two facts, or whose fact is stated in two documents, lists both. Matching ignores
  whitespace (PDF and text files break lines inside sentences) and applies the knowledge base's
  text cleaning (NFKC) to the passage; a passage holding PII is masked in the knowledge base
  and cannot match.
- `document`: the source name (file name, or path under the folder it was added with) of the
  document holding the passages, or a list of them; a passage counts in any document listed.
- optional `id` (shown with the item, e.g. "hb-probation") and `tags` (a list; metrics are
  broken down per tag in `details.by_tag`, e.g. "en-zh" for English questions about Chinese
  documents).

A passage is *found at rank r* when the chunks ranked 1..r of its document together contain it
(the chunks' character spans cover every non-space character of one of its occurrences), so
any chunking can be scored, including passages that a chunk boundary cuts. Per mode (dense,
lexical, hybrid; luodi.rag.retrieve, with no relevance threshold: these are rank metrics):
`MODE.hit@k` (1 when a gold passage is found within the top k), `MODE.recall@k` (the share of
the gold passages found within the top k) and `MODE.mrr` (1 / the first rank at which a gold
passage is found, 0 when none is within the deepest k). A record whose passage is not in the
knowledge base's version of its document (misspelt, masked, or the document is missing) is an
error, listed with the reason and kept out of the metrics.

Faithfulness (`faithfulness: true`, the default): the target answers each question grounded
in the `answer_top_k` chunks retrieved with `answer_mode` (luodi.rag.answer.ground: the
numbered-sources prompt the gateway uses). The answer's sentences (split at 。！？；!?, ". "
and newlines, citation marks [n] removed) are each *supported* when their token F1
(luodi.eval.metrics.token_f1, CJK text per character) against the best-matching sentence of
the cited chunks reaches `support_threshold`; the chunks cited are the sources the answer
names as [n], or every source given when it names none. Per item `faithfulness` = supported
sentences / sentences (an empty answer scores 0) and `citation_rate` = 1 when it names a valid
source; the task reports their means. With `faithfulness: false` the target is never called.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from luodi.data.records import Record, meta_of
from luodi.errors import BadInputError
from luodi.eval import metrics as M
from luodi.eval.targets import GenerationParams, Target
from luodi.eval.tasks.base import (
    TEXT_CHARS,
    EvalTask,
    ProblemLog,
    TaskEnv,
    TaskResult,
    in_batches,
    mean,
    preview,
    register,
    require,
    result,
)
from luodi.eval.tasks.generate import split_conversation
from luodi.progress import Progress

Mode = Literal["dense", "lexical", "hybrid"]
MODES: tuple[Mode, ...] = ("dense", "lexical", "hybrid")
# Retrieved chunks kept per mode in each item of results.json (enough to see what won).
SHOWN_HITS = 5
_SENTENCE = re.compile(r"(?<=[。！？；!?;])|(?<=\.)\s+|\n+")
_CITE = re.compile(r"[\[【]\s*(\d+(?:\s*[,，、]\s*\d+)*)\s*[\]】]")


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


def _strings(value: Any) -> list[str] | None:
    """A non-empty string or list of non-empty strings as a list; None otherwise."""
    items = [value] if isinstance(value, str) else value
    ok = isinstance(items, list) and items and all(isinstance(x, str) and x.strip() for x in items)
    return list(items) if ok else None


def gold_of(rec: Record) -> Gold | str:
    """The record's question, answer and gold passages, or why it cannot be scored."""
    conv = split_conversation(rec)
    if conv is None:
        return "no user question before a non-empty assistant answer"
    meta = meta_of(rec)
    passages = _strings(meta.get("passage"))
    documents = _strings(meta.get("document"))
    if passages is None or documents is None:
        return (
            "no gold `passage` and `document` in the record's meta (strings or lists of "
            "strings: the text that answers the question and the file it is in)"
        )
    question = next(m["content"] for m in reversed(conv[0]) if m["role"] == "user")
    tags = meta.get("tags")
    return Gold(
        question=question,
        answer=conv[1],
        passages=passages,
        documents=documents,
        qid=str(meta["id"]) if meta.get("id") is not None else None,
        tags=[str(t) for t in tags] if isinstance(tags, list) else [],
    )


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
                    f"passage {preview(p, 60)!r} is not in {', '.join(gold.documents)} as the "
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
    progress: Progress | None = None,
    label: str = "retrieval",
) -> list[Scored]:
    """Rank each located question with `retriever` (luodi.rag.retrieve.Retriever) in every
    mode and score it (hit@k, recall@k, mrr per mode; see the module docstring).

    Queries are embedded in one batch and each retriever is asked once, `depth` (at least
    `candidates` and max(ks)) deep; each mode's ranking equals `retriever.search` with
    top_k = max(ks), `candidates` and `rrf_k`, and no relevance threshold.
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
        m: RetrieveConfig(mode=m, top_k=top, candidates=max(candidates, top), rrf_k=rrf_k)
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
            f"{m}.{name}": mean([r[f"{m}.{name}"] for r in rows])
            for m in modes
            for name in (f"hit@{k}", "mrr")
        }
        for tag, rows in sorted(groups.items())
    }


# -- the task -------------------------------------------------------------------------------
@register
class RetrievalTask(EvalTask):
    """Retrieval quality (hit@k, recall@k, MRR per mode) and grounded-answer faithfulness."""

    task_type: ClassVar[str] = "retrieval"
    record_kinds: ClassVar[tuple[str, ...]] = ("qa",)
    main_score: ClassVar[str | None] = "hybrid.mrr"

    task: Literal["retrieval"] = Field(default="retrieval", description="retrieval")
    knowledge_base: str = Field(
        description="The knowledge-base version searched, NAME (newest) or NAME:vN."
    )
    modes: list[Mode] = Field(
        default_factory=lambda: list(MODES),
        min_length=1,
        description="Retrieval modes scored: dense, lexical, hybrid.",
    )
    k: list[int] = Field(
        default_factory=lambda: [1, 3, 5, 10],
        min_length=1,
        description="Cut-offs of hit@k and recall@k; MRR counts ranks up to the largest.",
    )
    candidates: int = Field(
        default=50, ge=1, description="Chunks taken from each retriever before hybrid fusion."
    )
    rrf_k: int = Field(default=60, ge=1, description="The k of reciprocal rank fusion.")
    faithfulness: bool = Field(
        default=True,
        description="Generate grounded answers with the target and score how many of their "
        "sentences the cited chunks support; false: retrieval only, the target is not called.",
    )
    answer_mode: Mode = Field(default="hybrid", description="Retrieval mode for the answers.")
    answer_top_k: int = Field(
        default=4, ge=1, le=50, description="Chunks put into the answer prompt."
    )
    support_threshold: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="Token F1 with a cited chunk's sentence at which an answer sentence counts "
        "as supported.",
    )
    template: str | None = Field(
        default=None,
        description="System prompt with a {sources} slot; default: luodi's grounding prompt "
        "(Chinese for a Chinese question, English otherwise).",
    )
    max_new_tokens: int = Field(default=256, ge=1, description="Longest answer, in tokens.")

    @field_validator("modes")
    @classmethod
    def _unique_modes(cls, v: list[Mode]) -> list[Mode]:
        return list(dict.fromkeys(v))

    @field_validator("k")
    @classmethod
    def _positive_k(cls, v: list[int]) -> list[int]:
        if any(x < 1 for x in v):
            raise ValueError("every k must be at least 1")
        return sorted(set(v))

    def check_target(self, target: Target) -> None:
        """With faithfulness on, the target must generate."""
        if self.faithfulness:
            require(
                target,
                "generate",
                self.label,
                "Set `faithfulness: false` to measure retrieval only.",
            )

    def _open(self, env: TaskEnv) -> Any:
        """The knowledge base, from the run's store (`env.extra["store"]`) or the default one."""
        from luodi.config import Settings
        from luodi.rag.kb import open_kb
        from luodi.store import Store

        store = env.extra.get("store")
        if store is not None:
            return open_kb(store, self.knowledge_base)
        own = Store(Settings())
        try:
            return open_kb(own, self.knowledge_base)
        finally:
            own.close()

    def run(
        self, target: Target, records: list[Record], progress: Progress, env: TaskEnv
    ) -> TaskResult:
        """Rank every question's chunks in each mode; answer and score faithfulness if asked.

        NotFoundError when the knowledge base does not exist, BadInputError when it is empty.
        """
        kb = self._open(env)
        if kb.retriever is None:
            raise BadInputError(
                f"knowledge base {kb.info.ref} has no documents; add some with "
                f"`luodi kb add {kb.info.name} FILES`"
            )
        log = ProblemLog()
        index = GoldIndex(kb.chunks)
        pending: list[tuple[Gold, list[list[Occurrence]]]] = []
        recs: list[Record] = []
        for rec in records:
            gold = gold_of(rec)
            located = index.locate(gold) if isinstance(gold, Gold) else gold
            if isinstance(gold, str):
                log.add(rec, "skipped", gold)
            elif isinstance(located, str):
                log.add(rec, "error", located)
            else:
                pending.append((gold, located))
                recs.append(rec)
        modes = list(self.modes)
        if self.faithfulness and self.answer_mode not in modes:
            modes.append(self.answer_mode)  # fetch its candidates too; scored only if asked
        scored = score_retrieval(
            kb.retriever,
            index,
            pending,
            modes,
            self.k,
            candidates=self.candidates,
            rrf_k=self.rrf_k,
            depth=self.answer_top_k,
            progress=progress,
            label=self.label,
        )
        items = [self._item(rec, q) for rec, q in zip(recs, scored, strict=True)]
        error = None
        if self.faithfulness:
            error = self._answer(target, kb.retriever, scored, items, env, progress)
        metrics = {
            n: mean([it["scores"][n] for it in items]) for n in metric_names(self.modes, self.k)
        }
        if self.faithfulness:
            answered = [it["scores"] for it in items if "faithfulness" in it["scores"]]
            metrics["faithfulness"] = mean([s["faithfulness"] for s in answered])
            metrics["citation_rate"] = mean([s["citation_rate"] for s in answered])
        details = {
            "knowledge_base": kb.info.model_dump(mode="json"),
            "by_tag": by_tag(scored, self.modes, self.k),
            "answered": sum("faithfulness" in it["scores"] for it in items),
        }
        return result(
            metrics=metrics,
            items=items,
            records=len(records),
            log=log,
            error=error,
            details=details,
            prompt=self._prompt_info(kb, env),
        )

    def _item(self, rec: Record, q: Scored) -> dict[str, Any]:
        keep = set(metric_names(self.modes, self.k))
        return {
            "id": rec.get("id"),
            "location": rec.get("location"),
            "qid": q.gold.qid,
            "tags": q.gold.tags,
            "input": preview(q.gold.question),
            "reference": preview(q.gold.answer, TEXT_CHARS),
            "documents": q.gold.documents,
            "passages": [preview(p) for p in q.gold.passages],
            "ranks": {m: r for m, r in q.ranks.items() if m in self.modes},
            "retrieved": {m: r for m, r in q.shown.items() if m in self.modes},
            "scores": {n: v for n, v in q.scores.items() if n in keep},
        }

    def _answer(
        self,
        target: Target,
        retriever: Any,
        scored: list[Scored],
        items: list[dict[str, Any]],
        env: TaskEnv,
        progress: Progress,
    ) -> str | None:
        """Grounded answers for every item, scored into its `scores`; the failure (if any)."""
        from luodi.rag.answer import RagSettings, ground
        from luodi.rag.retrieve import RetrieveConfig

        settings = RagSettings(
            top_k=self.answer_top_k, mode=self.answer_mode, template=self.template
        )
        cfg = RetrieveConfig(
            mode=self.answer_mode,
            top_k=self.answer_top_k,
            candidates=max(self.candidates, self.answer_top_k),
            rrf_k=self.rrf_k,
        )
        params = GenerationParams(max_new_tokens=self.max_new_tokens, seed=env.seed)
        jobs = []
        for q, item in zip(scored, items, strict=True):
            found = ranking(retriever, q, cfg)
            prompt = ground([{"role": "user", "content": q.gold.question}], found, settings)
            jobs.append((item, [r.chunk for r in found], prompt))

        def score(batch: Sequence[tuple[dict[str, Any], list[Any], Any]]) -> list[None]:
            replies = target.generate([p for _, _, p in batch], params)
            for (item, chunks, _), reply in zip(batch, replies, strict=True):
                share, cites, detail = faithfulness_of(
                    reply, [c.text for c in chunks], self.support_threshold
                )
                item["prediction"] = preview(reply, TEXT_CHARS)
                item["sources"] = [c.id for c in chunks]
                item["sentences"] = detail
                item["scores"]["faithfulness"] = share
                item["scores"]["citation_rate"] = float(cites)
            return [None] * len(batch)

        _, error = in_batches(jobs, self.batch_size, score, progress, f"{self.label} answers")
        return error

    def _prompt_info(self, kb: Any, env: TaskEnv) -> dict[str, Any]:
        info: dict[str, Any] = {
            "knowledge_base": kb.info.ref,
            "knowledge_base_hash": kb.info.content_hash,
            "embedder": kb.info.embedder,
            "modes": self.modes,
            "k": self.k,
            "candidates": self.candidates,
            "rrf_k": self.rrf_k,
        }
        if self.faithfulness:
            info["answers"] = {
                "mode": self.answer_mode,
                "top_k": self.answer_top_k,
                "support_threshold": self.support_threshold,
                "template": self.template,
                "generation": GenerationParams(
                    max_new_tokens=self.max_new_tokens, seed=env.seed
                ).model_dump(),
            }
        return info
