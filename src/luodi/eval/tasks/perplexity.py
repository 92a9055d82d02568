"""`perplexity`: how well the target predicts the texts of a text dataset.

Each text's token log-likelihood comes from the target (every token scored from the start of
the text; long texts in disjoint windows of the model's context). Per item: `nll`, the mean
negative log-likelihood per token. Over the task, token-weighted: nll = -Σ log p / Σ tokens
and perplexity = exp(nll); `tokens` is in details. Lower is better for both. Perplexities of
models with different tokenizers are not comparable (they count different tokens).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from luodi.data.records import Record
from luodi.eval.targets import Target
from luodi.eval.tasks.base import (
    EvalTask,
    ProblemLog,
    TaskEnv,
    TaskResult,
    in_batches,
    register,
    require,
    result,
)
from luodi.progress import Progress

PREVIEW = 200


@register
class PerplexityTask(EvalTask):
    """Token-weighted negative log-likelihood and perplexity of a text dataset."""

    task_type: ClassVar[str] = "perplexity"
    record_kinds: ClassVar[tuple[str, ...]] = ("text",)
    main_score: ClassVar[str | None] = "nll"

    task: Literal["perplexity"] = Field(default="perplexity", description="perplexity")

    def check_target(self, target: Target) -> None:
        """The target must score whole texts."""
        require(
            target,
            "rolling_loglikelihood",
            self.label,
            "Use a local model or an endpoint whose completions return prompt logprobs.",
        )

    def run(
        self, target: Target, records: list[Record], progress: Progress, env: TaskEnv
    ) -> TaskResult:
        """Score every non-empty text; texts with no scorable token are skipped."""
        log = ProblemLog()
        work = []
        for rec in records:
            if str(rec.get("text") or "").strip():
                work.append(rec)
            else:
                log.add(rec, "skipped", "empty text")

        def score(batch: Sequence[Record]) -> list[dict[str, Any]]:
            scored = target.loglikelihood_rolling([str(r["text"]) for r in batch])
            return [
                {
                    "id": rec.get("id"),
                    "location": rec.get("location"),
                    "input": str(rec["text"])[:PREVIEW],
                    "tokens": count,
                    "logprob": total,
                    "scores": {"nll": -total / count},
                }
                if count
                else {"id": rec.get("id"), "skip": rec}
                for rec, (total, count) in zip(batch, scored, strict=True)
            ]

        raw, error = in_batches(work, self.batch_size, score, progress, self.label)
        items = []
        for it in raw:
            if "skip" in it:
                log.add(it["skip"], "skipped", "no token to score (too short)")
            else:
                items.append(it)
        tokens = sum(it["tokens"] for it in items)
        nll = -sum(it["logprob"] for it in items) / tokens if tokens else 0.0
        return result(
            metrics={"nll": nll, "perplexity": math.exp(nll) if tokens else 0.0},
            items=items,
            records=len(records),
            log=log,
            error=error,
            details={"tokens": tokens},
            prompt={"scoring": "rolling log-likelihood, disjoint windows of the context"},
        )
