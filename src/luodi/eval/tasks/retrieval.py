"""`retrieval`: does a knowledge base find the passage that answers a question, and does the
model's grounded answer stay within what it found?

The dataset is a qa dataset (question = the last user message, reference answer = the last
assistant message) whose records carry their gold passages in `meta` (a .jsonl with these keys
ingested with `luodi data ingest FILE --kind qa` puts every key but question/answer there):

- `passage`: a string, or a list of strings, copied from the document as luodi's loaders read
  it (a table row, a sentence, a clause). Each is one relevant passage: a question whose answer
  needs two facts, or whose fact is stated in two documents, lists both.
- `document`: the source name (file name, or path under the folder it was added with) of the
  document holding the passages, or a list of them; a passage counts in any document listed.
- optional `id` (shown with the item, e.g. "hb-probation") and `tags` (a list; metrics are
  broken down per tag in `details.by_tag`, e.g. "en-zh" for English questions about Chinese
  documents).

Per mode the task reports `MODE.hit@k`, `MODE.recall@k` and `MODE.mrr`, scored as
luodi.eval.retrieval_metrics describes (how passages are matched and found at a rank). A
record whose passage is not in the knowledge base's version of its document (misspelt, masked,
or the document is missing) is an error, listed with the reason and kept out of the metrics.

Faithfulness (`faithfulness: true`, the default): the target answers each question grounded
in the `answer_top_k` chunks retrieved with `answer_mode` (luodi.rag.answer.ground: the
numbered-sources prompt the gateway uses); per item `faithfulness` = supported sentences /
sentences (an empty answer scores 0; `support_threshold`, see retrieval_metrics) and
`citation_rate` = 1 when it names a valid source; the task reports their means. With
`faithfulness: false` the task needs no target (`needs_target`): `luodi eval run` without a
target runs it.

The knowledge-base version searched is resolved before the run starts (`inputs`) and becomes a
parent of the eval run (role "knowledge_base").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from luodi.data.records import Record, meta_of
from luodi.errors import BadInputError
from luodi.eval.retrieval_metrics import (
    MODES,
    SHOWN_HITS,
    Gold,
    GoldIndex,
    Mode,
    Occurrence,
    Scored,
    by_tag,
    cited_numbers,
    faithfulness_of,
    metric_names,
    rank_scores,
    ranking,
    score_retrieval,
    sentences,
    squash,
)
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
from luodi.store import ArtifactInfo, Store

KB_ROLE = "knowledge_base"
"""The role of the knowledge-base version among the eval run's parents."""

# The scoring helpers, importable from here too (bench/bench_retrieval.py does).
__all__ = [
    "MODES",
    "SHOWN_HITS",
    "Gold",
    "GoldIndex",
    "Mode",
    "RetrievalTask",
    "Scored",
    "by_tag",
    "cited_numbers",
    "faithfulness_of",
    "gold_of",
    "metric_names",
    "rank_scores",
    "ranking",
    "score_retrieval",
    "sentences",
    "squash",
]


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


# RetrieveConfig fields a task's `retrieve` may not set.
_NOT_RETRIEVE = frozenset(
    {"mode", "top_k", "candidates", "rrf_k", "min_score", "documents", "tags", "rerank"}
)


def _empty(label: str, kb: Any) -> str:
    return (
        f"task {label!r}: knowledge base {kb.ref} has no documents; add some with "
        f"`luodi kb add {kb.name} FILES`"
    )


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
    retrieve: dict[str, Any] = Field(
        default_factory=dict,
        description="Other luodi.rag.retrieve settings of the rankings, e.g. {fusion: rrf} or "
        "{dense_weight: 0.5, fuse_depth: 20}; default: the retriever's own (what `luodi kb "
        "search` uses). Mode, top_k, candidates and rrf_k are the task's fields; filters, "
        "thresholds and reranking do not apply.",
    )
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

    @field_validator("retrieve")
    @classmethod
    def _retrieve_settings(cls, v: dict[str, Any]) -> dict[str, Any]:
        from luodi.rag.retrieve import RetrieveConfig

        taken = sorted(set(v) & _NOT_RETRIEVE)
        if taken:
            raise ValueError(
                f"{', '.join(taken)} cannot be set in `retrieve` (modes, k, candidates and "
                "rrf_k are the task's own fields; filters, thresholds and reranking do not apply)"
            )
        RetrieveConfig(**v)  # unknown keys and bad values fail here, when the suite is read
        return v

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

    def needs_target(self) -> bool:
        """Only the answers (faithfulness) call the target; retrieval alone needs none."""
        return self.faithfulness

    def inputs(self, store: Store) -> list[tuple[ArtifactInfo, str]]:
        """The knowledge-base version searched (role "knowledge_base"), resolved now.

        NotFoundError naming the knowledge bases when it does not exist; BadInputError when
        it holds no documents (checked before any model is loaded)."""
        from luodi.rag.kb import resolve_kb

        info = resolve_kb(store, self.knowledge_base)
        if not int(info.meta.get("chunks") or 0):
            raise BadInputError(_empty(self.label, info))
        return [(info, KB_ROLE)]

    def _open(self, env: TaskEnv) -> Any:
        """The knowledge base: the version the runner resolved (`env.extra["inputs"]`) from
        the run's store (`env.extra["store"]`), else `knowledge_base` from the default store."""
        from luodi.config import Settings
        from luodi.rag.kb import open_kb

        pinned = [a for a, role in env.extra.get("inputs", ()) if role == KB_ROLE]
        ref = pinned[0].ref if pinned else self.knowledge_base
        store = env.extra.get("store")
        if store is not None:
            return open_kb(store, ref)
        own = Store(Settings())
        try:
            return open_kb(own, ref)
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
            raise BadInputError(_empty(self.label, kb.info))
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
            settings=self.retrieve,
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
            **self.retrieve,
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
        from luodi.rag.retrieve import RetrieveConfig

        info: dict[str, Any] = {
            "knowledge_base": kb.info.ref,
            "knowledge_base_hash": kb.info.content_hash,
            "embedder": kb.info.embedder,
            "modes": self.modes,
            "k": self.k,
            "candidates": self.candidates,
            "rrf_k": self.rrf_k,
            # every retriever setting, defaults included: defaults change between releases
            "retrieve": RetrieveConfig(
                candidates=self.candidates, rrf_k=self.rrf_k, **self.retrieve
            ).model_dump(exclude={"mode", "top_k", "min_score", "documents", "tags", "rerank"}),
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
