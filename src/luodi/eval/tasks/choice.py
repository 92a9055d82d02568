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

`scoring: generate` is for chat endpoints that return no prompt log-probabilities: the model
is asked to reply with one letter (`instruction` before each question) and the first option
letter standing alone in its reply is its answer (`parse_letter`); a reply without one counts
as wrong and is counted in `details.unparsable`.

Rows without every option are skipped; a row whose answer key is not one of the choices is an
error; both are reported with their ids and locations and left out of the accuracy.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from luodi.data.records import Record, meta_of
from luodi.errors import BadInputError
from luodi.eval.targets import GenerationParams, Prompt, Target
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

DEFAULT_TEMPLATE = "{question}\n{options}\nAnswer:"
DEFAULT_INSTRUCTION = "Answer with only the letter ({letters}) of the correct option."
SHOT_SPLITS = ("dev", "validation")


def _letters(choices: Sequence[str]) -> str:
    """The option letters as the instruction names them: "A, B, C or D"."""
    return ", ".join(choices[:-1]) + " or " + choices[-1] if len(choices) > 1 else choices[0]


def parse_letter(reply: str, choices: Sequence[str]) -> str | None:
    """The option letter a free-text reply gives, or None when it names none.

    The reply is NFKC-normalised (full-width Ｂ is B). A reply that is only a letter, in any
    case and with punctuation around it ("b", "(C)"), or that starts with one followed by a
    bracket or a stop ("b) 42", "a. honey"), is that letter; otherwise the first upper-case
    option letter not part of a Latin word ("B. Mars", "The answer is C", "答案是D。").
    """
    text = unicodedata.normalize("NFKC", reply).strip()
    bare = re.sub(r"[\W_]+", "", text).upper()
    if bare in choices:
        return bare
    letters = "|".join(re.escape(c) for c in sorted(choices, key=len, reverse=True))
    lead = re.match(rf"[(\[]?\s*({letters})\s*[).:、\]]", text, re.IGNORECASE)
    if lead:
        return lead.group(1).upper()
    found = re.search(rf"(?<![A-Za-z])({letters})(?![A-Za-z])", text)
    return found.group(1) if found else None


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
    """Multiple choice scored by the log-likelihood of each option, or by a generated letter."""

    task_type: ClassVar[str] = "choice"
    record_kinds: ClassVar[tuple[str, ...]] = ("labeled",)
    main_score: ClassVar[str | None] = "accuracy"

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
    scoring: Literal["loglikelihood", "generate"] = Field(
        default="loglikelihood",
        description=(
            "loglikelihood: score each option (needs prompt log-probabilities); generate: ask "
            "for one letter and parse the reply, for chat endpoints without log-probabilities "
            "(an unparsable reply counts as wrong)."
        ),
    )
    instruction: str = Field(
        default=DEFAULT_INSTRUCTION,
        description=(
            "generate scoring: the line put before each question (examples too); {letters} "
            "becomes 'A, B, C or D'. Empty: none."
        ),
    )
    max_new_tokens: int = Field(
        default=16, ge=1, description="generate scoring: longest reply, in tokens (greedy)."
    )

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
        if _field_names(self.instruction) - {"letters"}:
            raise BadInputError(
                f"choice instruction {self.instruction!r}: the only placeholder is {{letters}}"
            )

    def check_target(self, target: Target) -> None:
        """Generate scoring needs generation; log-likelihood scoring of chat-style prompts
        needs the model's chat template, of plain ones prompt logprobs."""
        if self.scoring == "generate":
            require(target, "generate", self.label, "Use a causal model or an endpoint.")
        elif self.prompt_style == "chat":
            require(
                target,
                "chat_loglikelihood",
                self.label,
                "Set prompt_style: plain, or scoring: generate for a chat endpoint.",
            )
        else:
            require(
                target,
                "loglikelihood",
                self.label,
                "The endpoint must return prompt logprobs (completions with echo); "
                "otherwise set scoring: generate.",
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

    def _ask(self, question: str) -> str:
        """The question as asked: with the instruction in front under generate scoring."""
        if self.scoring != "generate" or not self.instruction:
            return question
        return self.instruction.format(letters=_letters(self.choices)) + "\n\n" + question

    def _shot_answer(self, shot: _Row) -> str:
        if self.scoring == "generate":  # examples answer with what the reply must be: a letter
            return shot.key if self.prompt_style == "chat" else " " + shot.key
        return self._answer(shot.key, shot.options)

    def _context(self, row: _Row, shots: list[_Row]) -> Prompt:
        solved = [(self._ask(s.question), self._shot_answer(s)) for s in shots]
        if self.prompt_style == "plain":
            return "\n\n".join([q + a for q, a in solved] + [self._ask(row.question)])
        msgs: list[dict[str, str]] = (
            [{"role": "system", "content": self.system}] if self.system else []
        )
        for q, a in solved:
            msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        return [*msgs, {"role": "user", "content": self._ask(row.question)}]

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

        params = self.params(env.seed)

        def score(batch: Sequence[tuple[_Row, Prompt]]) -> list[dict[str, Any]]:
            if self.scoring == "generate":
                return self._score_generate(target, batch, params)
            return self._score_loglikelihood(target, batch)

        items, error = in_batches(work, self.batch_size, score, progress, self.label)
        by_subject: dict[str, list[float]] = defaultdict(list)
        for it in items:
            if it["subject"] is not None:
                by_subject[it["subject"]].append(it["scores"]["accuracy"])
        details: dict[str, Any] = {}
        if self.scoring == "generate":
            details["unparsable"] = sum(1 for it in items if it["prediction"] is None)
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
                "scoring": self.scoring,
                **(
                    {"generation": params.model_dump(), "instruction": self.instruction}
                    if self.scoring == "generate"
                    else {}
                ),
            },
        )

    def params(self, seed: int) -> GenerationParams:
        """Greedy decoding of at most `max_new_tokens` (generate scoring)."""
        return GenerationParams(max_new_tokens=self.max_new_tokens, temperature=0.0, seed=seed)

    def _item(self, row: _Row, prediction: str | None, **extra: Any) -> dict[str, Any]:
        return {
            "id": row.rec.get("id"),
            "location": row.rec.get("location"),
            "subject": row.subject,
            "input": preview(row.question),
            "reference": row.key,
            "prediction": prediction,
            **extra,
            "scores": {"accuracy": float(prediction == row.key)},
        }

    def _score_loglikelihood(
        self, target: Target, batch: Sequence[tuple[_Row, Prompt]]
    ) -> list[dict[str, Any]]:
        """Each option's log-likelihood as the answer; the highest wins (ties: earlier)."""
        k = len(self.choices)
        contexts = [ctx for _, ctx in batch for _ in range(k)]
        conts = [self._answer(c, row.options) for row, _ in batch for c in self.choices]
        values = target.loglikelihood(contexts, conts)
        items = []
        for i, (row, _) in enumerate(batch):
            lls = values[i * k : (i + 1) * k]
            if self.answer_format == "text" and self.length_normalize:
                lls = [
                    v / max(1, len(row.options[c])) for v, c in zip(lls, self.choices, strict=True)
                ]
            best = self.choices[max(range(k), key=lambda j: (lls[j], -j))]
            items.append(self._item(row, best, logprobs=dict(zip(self.choices, lls, strict=True))))
        return items

    def _score_generate(
        self, target: Target, batch: Sequence[tuple[_Row, Prompt]], params: GenerationParams
    ) -> list[dict[str, Any]]:
        """The letter each reply names (None when it names none: scored wrong)."""
        replies = target.generate([ctx for _, ctx in batch], params)
        return [
            self._item(row, parse_letter(reply, self.choices), reply=preview(reply))
            for (row, _), reply in zip(batch, replies, strict=True)
        ]
