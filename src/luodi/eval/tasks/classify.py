"""`classify`: label the texts of a labeled dataset; accuracy, macro and per-class P/R/F1.

A classifier version (trained by the classify stage) predicts labels itself
(luodi.train.classify.predict). A causal LM chooses among the label set by log-likelihood:
each label is scored as the answer to a prompt that shows the text (highest wins, ties to the
earlier label). The label set is `labels`, or the sorted labels of the evaluated records.
Rows without text or label are skipped and reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field

from luodi.data.records import Record
from luodi.errors import BadInputError
from luodi.eval import metrics as M
from luodi.eval.targets import Prompt, Target
from luodi.eval.tasks.base import (
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
from luodi.progress import Progress

DEFAULT_TEMPLATE = "Classify the text as one of: {labels}.\n\nText: {text}\nLabel:"


@register
class ClassifyTask(EvalTask):
    """Text classification: a classifier's predictions, or an LM's most likely label."""

    task_type: ClassVar[str] = "classify"
    record_kinds: ClassVar[tuple[str, ...]] = ("labeled",)
    main_score: ClassVar[str | None] = "accuracy"

    task: Literal["classify"] = Field(default="classify", description="classify")
    labels: list[str] | None = Field(
        default=None,
        description="Label set a causal LM chooses from (default: the records' labels, sorted).",
    )
    prompt_style: Literal["chat", "plain"] = Field(
        default="chat",
        description="How a causal LM is asked: chat template (local) or plain text.",
    )
    template: str = Field(
        default=DEFAULT_TEMPLATE,
        description="Prompt for a causal LM; placeholders {text} and {labels} (comma-separated).",
    )
    length_normalize: bool = Field(
        default=False,
        description="Divide each label's log-likelihood by its length in characters.",
    )
    system: str | None = Field(default=None, description="System prompt (chat style).")

    def model_post_init(self, __context: Any) -> None:
        """Check the template's placeholders now."""
        try:
            self.template.format_map({"text": "", "labels": ""})
        except (KeyError, IndexError, ValueError) as exc:
            raise BadInputError(
                f"classify template {self.template!r} is invalid ({exc}); placeholders are "
                "{text} and {labels}"
            ) from None

    def check_target(self, target: Target) -> None:
        """A classifier, or an LM that can score log-likelihoods in the prompt style."""
        if "classify" in target.capabilities:
            return
        need = "chat_loglikelihood" if self.prompt_style == "chat" else "loglikelihood"
        require(target, need, self.label, "Use a classifier version or a causal model.")

    def _prompt(self, text: str, labels: list[str]) -> Prompt:
        body = self.template.format_map({"text": text, "labels": ", ".join(labels)})
        if self.prompt_style == "plain":
            return body
        head = [{"role": "system", "content": self.system}] if self.system else []
        return [*head, {"role": "user", "content": body}]

    def run(
        self, target: Target, records: list[Record], progress: Progress, env: TaskEnv
    ) -> TaskResult:
        """Predict a label per well-formed row; classification_report over the scored items."""
        log = ProblemLog()
        work: list[Record] = []
        for rec in records:
            if not str(rec.get("text") or "").strip():
                log.add(rec, "skipped", "empty text")
            elif not str(rec.get("label") or "").strip():
                log.add(rec, "skipped", "empty label")
            else:
                work.append(rec)
        classifier = "classify" in target.capabilities
        label_set = self.labels or sorted({str(r["label"]).strip() for r in work})
        if not classifier and len(label_set) < 2:
            raise BadInputError(
                f"task {self.label}: a causal LM needs at least two labels to choose from "
                f"(got {label_set}); set `labels`"
            )

        def score(batch: Sequence[Record]) -> list[dict[str, Any]]:
            texts = [str(r["text"]).strip() for r in batch]
            if classifier:
                preds = target.classify(texts)
            else:
                prompts = [self._prompt(t, label_set) for t in texts]
                sep = "" if self.prompt_style == "chat" else " "
                lls = target.loglikelihood(
                    [p for p in prompts for _ in label_set],
                    [sep + lab for _ in prompts for lab in label_set],
                )
                preds = []
                for i in range(len(batch)):
                    row = lls[i * len(label_set) : (i + 1) * len(label_set)]
                    if self.length_normalize:
                        row = [v / max(1, len(lab)) for v, lab in zip(row, label_set, strict=True)]
                    preds.append(label_set[max(range(len(row)), key=lambda k: (row[k], -k))])
            return [
                {
                    "id": rec.get("id"),
                    "location": rec.get("location"),
                    "input": preview(text),
                    "reference": str(rec["label"]).strip(),
                    "prediction": pred,
                    "scores": {"accuracy": float(pred == str(rec["label"]).strip())},
                }
                for rec, text, pred in zip(batch, texts, preds, strict=True)
            ]

        items, error = in_batches(work, self.batch_size, score, progress, self.label)
        details: dict[str, Any] = {}
        metrics = {"accuracy": mean([it["scores"]["accuracy"] for it in items])}
        if items:
            y_true = [it["reference"] for it in items]
            y_pred = [it["prediction"] for it in items]
            order = M.label_order(y_true, y_pred)
            if not classifier:
                order = list(label_set) + [x for x in order if x not in label_set]
            report = M.classification_report(y_true, y_pred, labels=order)
            metrics.update(
                macro_precision=report["macro_precision"],
                macro_recall=report["macro_recall"],
                macro_f1=report["macro_f1"],
            )
            details["report"] = report
        else:
            metrics.update(macro_precision=0.0, macro_recall=0.0, macro_f1=0.0)
        return result(
            metrics=metrics,
            items=items,
            records=len(records),
            log=log,
            error=error,
            details=details,
            prompt={
                "method": "classifier" if classifier else "loglikelihood",
                "style": None if classifier else self.prompt_style,
                "template": None if classifier else self.template,
                "labels": None if classifier else label_set,
                "system": self.system,
            },
        )
