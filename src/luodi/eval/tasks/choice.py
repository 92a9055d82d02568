"""`choice`: multiple choice in the C-Eval / MMLU / CMMLU layout, scored by log-likelihood.

A choice dataset is a `labeled` dataset: `text` is the question, `label` the answer letter, and
the options sit in `meta` under their letters (A, B, C, D; case-insensitive), with an optional
`subject` (ingest files it as `category`). That is what

    luodi data ingest ceval.csv --kind labeled --column text=question --column label=answer

makes of a file with columns question, A, B, C, D, answer, subject.

Each option is scored by the target's log-likelihood of the answer given the prompt (no
generation): the answer letter (`answer_format: letter`, the MMLU convention) or the option's
text (`answer_format: text`, optionally divided by its length in characters). The highest
wins; ties go to the earlier option. `few_shot` puts N solved examples before each question,
taken from a dev split (`few_shot_split`, default `dev` then `validation`) or another dataset
(`few_shot_dataset`), the question's own subject first, in dataset order.

Rows without every option are skipped; a row whose answer key is not one of the choices is an
error; both are reported with their ids and locations and left out of the accuracy.
"""

from __future__ import annotations

import string
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from luodi.data.records import Record, meta_of
from luodi.errors import BadInputError
from luodi.eval.targets import Prompt, Target
from luodi.eval.tasks.base import (
    EvalTask,
    ProblemLog,
    TaskEnv,
    TaskResult,
    in_batches,
    mean,
    register,
    require,
    result,
)
from luodi.progress import Progress

DEFAULT_TEMPLATE = "{question}\n{options}\nAnswer:"
SHOT_SPLITS = ("dev", "validation")


def subject_of(rec: Record) -> str | None:
    """The record's subject: meta `subject`, else `category` (what ingest renames it to)."""
    meta = meta_of(rec)
    value = meta.get("subject") or meta.get("category")
    return str(value) if value not in (None, "") else None


def shot_source(
    dataset: str, few_shot_dataset: str | None, few_shot_split: str | None, splits: list[str]
) -> tuple[str, str | None]:
    """(dataset, split) that few-shot examples come from; BadInputError when there is none.

    Another dataset is read whole unless a split is named; the evaluated dataset needs a dev
    split (`dev`, then `validation`, unless named), so examples never come from the test items.
    """
    if few_shot_dataset is not None:
        return few_shot_dataset, few_shot_split
    if few_shot_split is not None:
        return dataset, few_shot_split
    for name in SHOT_SPLITS:
        if name in splits:
            return dataset, name
    raise BadInputError(
        f"few-shot examples need a dev split of {dataset} ({' or '.join(SHOT_SPLITS)}; it has: "
        f"{', '.join(splits) or 'no splits'}); set few_shot_split or few_shot_dataset"
    )


def pick_shots(
    pool: Sequence[Record], n: int, rec: Record, group: Callable[[Record], Any]
) -> list[Record]:
    """`n` examples from `pool` for `rec`: those of its own group first, then the rest, in
    pool order, never `rec` itself (deterministic: no sampling)."""
    if n <= 0:
        return []
    own = group(rec)
    same = [p for p in pool if p.get("id") != rec.get("id") and group(p) == own]
    other = [p for p in pool if p.get("id") != rec.get("id") and group(p) != own]
    return (same + other)[:n]


@dataclass(frozen=True)
class _Row:
    """A well-formed choice row: its options, subject, rendered question and answer key."""

    rec: Record
    options: dict[str, str]
    subject: str | None
    question: str
    key: str


def _field_names(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


@register
class ChoiceTask(EvalTask):
    """Multiple choice scored by the log-likelihood of each option."""

    task_type: ClassVar[str] = "choice"
    record_kinds: ClassVar[tuple[str, ...]] = ("labeled",)

    task: Literal["choice"] = Field(default="choice", description="choice")
    choices: list[str] = Field(
        default=["A", "B", "C", "D"],
        min_length=2,
        description="Option letters; each is a meta column of the dataset (case-insensitive).",
    )
    few_shot: int = Field(default=0, ge=0, description="Solved examples before each question.")
    few_shot_split: str | None = Field(
        default=None,
        description="Split the examples come from (default: dev, then validation).",
    )
    few_shot_dataset: str | None = Field(
        default=None,
        description="Another dataset version (NAME[:vN]) holding the examples, e.g. a dev file.",
    )
    prompt_style: Literal["chat", "plain"] = Field(
        default="chat",
        description=(
            "chat: the prompt is a user message rendered with the model's chat template and the "
            "answer is the assistant's reply (local models); plain: raw text with the answer "
            "after a space, for base models and endpoints that return prompt logprobs."
        ),
    )
    template: str = Field(
        default=DEFAULT_TEMPLATE,
        description=(
            "The question's prompt; placeholders {question}, {options} (one 'A. ...' line per "
            "option), {subject} and each option letter, e.g. {A}."
        ),
    )
    answer_format: Literal["letter", "text"] = Field(
        default="letter",
        description="Score the answer letter (MMLU convention) or the option's text.",
    )
    length_normalize: bool = Field(
        default=False,
        description="With answer_format text: divide each option's log-likelihood by its length.",
    )
    system: str | None = Field(default=None, description="System prompt (chat style).")

    @field_validator("choices")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if len({c.strip().upper() for c in v}) != len(v) or any(not c.strip() for c in v):
            raise ValueError(f"choices must be distinct, non-empty letters: {v}")
        return [c.strip().upper() for c in v]

    def model_post_init(self, __context: Any) -> None:
        """Check the template's placeholders now, not on the first record."""
        allowed = {"question", "options", "subject", *self.choices}
        unknown = _field_names(self.template) - allowed
        if unknown:
            raise BadInputError(
                f"choice template placeholders {sorted(unknown)} are unknown; use "
                f"{', '.join('{' + a + '}' for a in sorted(allowed))}"
            )

    def check_target(self, target: Target) -> None:
        """Chat-style prompts need the model's chat template; plain ones prompt logprobs."""
        if self.prompt_style == "chat":
            require(target, "chat_loglikelihood", self.label, "Set prompt_style: plain.")
        else:
            require(
                target,
                "loglikelihood",
                self.label,
                "The endpoint must return prompt logprobs (completions with echo).",
            )

    def support_datasets(self, splits: Callable[[str], list[str]]) -> list[tuple[str, str | None]]:
        """The few-shot source when few_shot > 0."""
        if self.few_shot == 0:
            return []
        return [
            shot_source(
                self.dataset, self.few_shot_dataset, self.few_shot_split, splits(self.dataset)
            )
        ]

    # -- rows ----------------------------------------------------------------------------
    def _options(self, rec: Record) -> tuple[dict[str, str] | None, list[str]]:
        meta = {str(k).strip().upper(): v for k, v in meta_of(rec).items()}
        options = {c: "" if meta.get(c) is None else str(meta[c]).strip() for c in self.choices}
        missing = [c for c, v in options.items() if not v]
        return (None if missing else options), missing

    def _key(self, rec: Record) -> str:
        return str(rec.get("label") or "").strip().strip("().。 ").upper()

    def _row(self, rec: Record, log: ProblemLog | None) -> _Row | None:
        """A usable row with its prompt; None (logged when `log`) for a malformed one."""
        options, missing = self._options(rec)
        if not str(rec.get("text") or "").strip():
            if log:
                log.add(rec, "skipped", "empty question")
            return None
        if options is None:
            if log:
                log.add(rec, "skipped", f"missing option(s) {', '.join(missing)}")
            return None
        key = self._key(rec)
        if key not in self.choices:
            if log:
                log.add(
                    rec,
                    "error",
                    f"answer key {rec.get('label')!r} is not among the choices "
                    f"{', '.join(self.choices)}",
                )
            return None
        subject = subject_of(rec)
        values = {
            "question": str(rec["text"]).strip(),
            "options": "\n".join(f"{c}. {options[c]}" for c in self.choices),
            "subject": subject or "",
            **options,
        }
        return _Row(rec, options, subject, self.template.format_map(values), key)

    def _answer(self, letter: str, options: dict[str, str]) -> str:
        text = letter if self.answer_format == "letter" else options[letter]
        return text if self.prompt_style == "chat" else " " + text

    def _context(self, row: _Row, shots: list[_Row]) -> Prompt:
        solved = [(s.question, self._answer(s.key, s.options)) for s in shots]
        if self.prompt_style == "plain":
            return "\n\n".join([q + a for q, a in solved] + [row.question])
        msgs: list[dict[str, str]] = (
            [{"role": "system", "content": self.system}] if self.system else []
        )
        for q, a in solved:
            msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        return [*msgs, {"role": "user", "content": row.question}]

    # -- scoring -------------------------------------------------------------------------
    def run(
        self, target: Target, records: list[Record], progress: Progress, env: TaskEnv
    ) -> TaskResult:
        """Accuracy overall and per subject over the well-formed rows."""
        log = ProblemLog()
        pool = [
            row
            for source in self.support_datasets(env.splits)
            for s in env.load(*source)
            if (row := self._row(s, None)) is not None
        ]
        if self.few_shot and len(pool) < self.few_shot:
            raise BadInputError(
                f"task {self.label}: few_shot {self.few_shot} but the example source has only "
                f"{len(pool)} well-formed rows"
            )
        pool_recs = [r.rec for r in pool]
        by_id = {id(r.rec): r for r in pool}
        work: list[tuple[_Row, Prompt]] = []
        for rec in records:
            row = self._row(rec, log)
            if row is None:
                continue
            shots = pick_shots(pool_recs, self.few_shot, rec, subject_of)
            work.append((row, self._context(row, [by_id[id(s)] for s in shots])))

        def score(batch: Sequence[tuple[_Row, Prompt]]) -> list[dict[str, Any]]:
            k = len(self.choices)
            contexts = [ctx for _, ctx in batch for _ in range(k)]
            conts = [self._answer(c, row.options) for row, _ in batch for c in self.choices]
            values = target.loglikelihood(contexts, conts)
            items = []
            for i, (row, _) in enumerate(batch):
                lls = values[i * k : (i + 1) * k]
                if self.answer_format == "text" and self.length_normalize:
                    lls = [
                        v / max(1, len(row.options[c]))
                        for v, c in zip(lls, self.choices, strict=True)
                    ]
                best = self.choices[max(range(k), key=lambda j: (lls[j], -j))]
                items.append(
                    {
                        "id": row.rec.get("id"),
                        "location": row.rec.get("location"),
                        "subject": row.subject,
                        "input": row.question,
                        "reference": row.key,
                        "prediction": best,
                        "logprobs": dict(zip(self.choices, lls, strict=True)),
                        "scores": {"accuracy": float(best == row.key)},
                    }
                )
            return items

        items, error = in_batches(work, self.batch_size, score, progress, self.label)
        by_subject: dict[str, list[float]] = defaultdict(list)
        for it in items:
            if it["subject"] is not None:
                by_subject[it["subject"]].append(it["scores"]["accuracy"])
        details: dict[str, Any] = {}
        if by_subject:
            details["per_subject"] = {
                s: {"accuracy": mean(v), "n": len(v)} for s, v in sorted(by_subject.items())
            }
            details["subject_macro_accuracy"] = mean([mean(v) for v in by_subject.values()])
        return result(
            metrics={"accuracy": mean([it["scores"]["accuracy"] for it in items])},
            items=items,
            records=len(records),
            log=log,
            error=error,
            details=details,
            prompt={
                "style": self.prompt_style,
                "template": self.template,
                "answer_format": self.answer_format,
                "system": self.system,
                "few_shot": self.few_shot,
                "few_shot_source": self.support_datasets(env.splits),
                "example": work[0][1] if work else None,
            },
        )
