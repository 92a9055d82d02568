"""`robustness`: does the answer survive small changes to the input?

Each item is answered as it is and as perturbed copies (luodi.eval.perturb: typos, character
swaps, full/half width, punctuation, synonyms, noise; `copies` per perturbation). The answers
come from a base task run unchanged on the originals and then on the copies, so scoring is
exactly that task's: `generate` for qa datasets (the last question before the reference
answer is perturbed), `classify` (a classifier or an LM's most likely label) or `choice`
(the question is perturbed, the options are not) for labeled datasets.

Per item: `consistency`, the share of its copies whose answer equals the original's (after
`normalize_answer`: NFKC, whitespace, trailing punctuation); the base metric on the original
(e.g. `accuracy`), its mean over the copies (`accuracy_perturbed`) and `drop`, original minus
perturbed. Task metrics are the means of those over the items, plus the same per perturbation
(`consistency.typo`, `accuracy_perturbed.typo`, `drop.typo`, over the items that have a copy
of that kind). A copy that a perturbation cannot change (no Latin word for `typo`, no table
word for `synonym`) is not made; an item left with no copy at all is skipped and reported.

Copies are deterministic: copy c of kind k of record r is `perturb(text, k, rng_for(seed, id,
k, c))`, so a rerun with the same seed perturbs the same way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import Field, PrivateAttr, field_validator

from luodi.data.records import Record
from luodi.errors import BadInputError
from luodi.eval.metrics import normalize_answer
from luodi.eval.perturb import (
    DEFAULT_SYNONYMS,
    PERTURBATIONS,
    SynonymTable,
    load_synonyms,
    perturb,
    rng_for,
)
from luodi.eval.targets import Target
from luodi.eval.tasks.base import (
    TASKS,
    EvalTask,
    ProblemLog,
    TaskEnv,
    TaskResult,
    mean,
    register,
    result,
)
from luodi.progress import Progress

# The base tasks robustness can wrap, with the item score each is judged by by default.
BASE_METRICS: dict[str, str] = {
    "generate": "token_f1",
    "classify": "accuracy",
    "choice": "accuracy",
}
# Keys of `base` that belong to the robustness task itself (it passes them on).
_OWN_KEYS = ("dataset", "split", "name", "limit", "batch_size")
_SEP = "~"


def _input_text(rec: Record) -> tuple[str, Callable[[str], Record]] | None:
    """(text to perturb, function making a copy of `rec` with that text replaced).

    qa records: the last user message before the last assistant turn (the question the
    reference answers); labeled records: `text`. None when there is no such text.
    """
    msgs = rec.get("messages")
    if msgs is None:
        text = str(rec.get("text") or "")
        return (text, lambda new: {**rec, "text": new}) if text.strip() else None
    msgs = list(msgs)
    last = max((i for i, m in enumerate(msgs) if m.get("role") == "assistant"), default=len(msgs))
    user = max((i for i in range(last) if msgs[i].get("role") == "user"), default=None)
    if user is None or not str(msgs[user].get("content") or "").strip():
        return None

    def copy(new: str) -> Record:
        out = [dict(m) for m in msgs]
        out[user]["content"] = new
        return {**rec, "messages": out}

    return str(msgs[user]["content"]), copy


@register
class RobustnessTask(EvalTask):
    """Answer consistency and metric drop under input perturbations."""

    task_type: ClassVar[str] = "robustness"
    record_kinds: ClassVar[tuple[str, ...]] = ("qa", "labeled")
    main_score: ClassVar[str | None] = "consistency"

    task: Literal["robustness"] = Field(default="robustness", description="robustness")
    base: dict[str, Any] = Field(
        default_factory=lambda: {"task": "generate"},
        description=(
            "The task that produces the answers, with its parameters: {task: generate} for qa "
            "datasets, {task: classify} or {task: choice} for labeled ones, e.g. "
            "{task: generate, max_new_tokens: 32}. dataset, split, limit, name and batch_size "
            "are the robustness task's own."
        ),
    )
    perturbations: list[str] = Field(
        default_factory=lambda: list(PERTURBATIONS.names()),
        min_length=1,
        description="Perturbation kinds: typo, swap, width, punct, synonym, noise.",
    )
    copies: int = Field(default=1, ge=1, description="Perturbed copies per kind and item.")
    edits: int = Field(default=1, ge=1, description="Perturbations applied to each copy.")
    metric: str | None = Field(
        default=None,
        description=(
            "The base task's item score compared before and after (default: token_f1 for "
            "generate, accuracy for classify and choice)."
        ),
    )
    synonyms: str | None = Field(
        default=None,
        description=(
            "A synonym file added to the built-in table: one group per line, words separated "
            "by commas or tabs."
        ),
    )

    _inner: EvalTask = PrivateAttr()
    _table: SynonymTable = PrivateAttr(default=DEFAULT_SYNONYMS)

    @field_validator("perturbations")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = [k for k in v if k not in PERTURBATIONS]
        if unknown:
            raise ValueError(
                f"unknown perturbation(s) {unknown}; known: {', '.join(PERTURBATIONS.names())}"
            )
        if len(set(v)) != len(v):
            raise ValueError(f"perturbations are listed twice: {v}")
        return v

    def model_post_init(self, __context: Any) -> None:
        """Build the base task now, so a bad base config fails when the suite is read."""
        kind = self.base.get("task")
        if kind not in BASE_METRICS:
            raise BadInputError(
                f"robustness base task must be one of {', '.join(BASE_METRICS)} "
                f"(base: {{task: ...}}), got {kind!r}"
            )
        own = [k for k in _OWN_KEYS if k in self.base]
        if own:
            raise BadInputError(
                f"robustness base sets {', '.join(own)}: set them on the robustness task itself"
            )
        cls = TASKS.get(kind)
        try:
            self._inner = cls.model_validate(
                {
                    **self.base,
                    "dataset": self.dataset,
                    "split": self.split,
                    "name": self.label,  # progress and messages name the robustness task
                    "batch_size": self.batch_size,
                }
            )
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise BadInputError(f"robustness base task ({kind}): {exc}") from None
        if self.synonyms is not None:
            self._table = load_synonyms(self.synonyms)

    @property
    def score_name(self) -> str:
        """The item score judged before and after perturbation."""
        return self.metric or BASE_METRICS[self._inner.task]

    def kinds(self) -> tuple[str, ...]:
        """The base task's record kinds: qa for generate, labeled for classify and choice."""
        return self._inner.kinds()

    def kinds_hint(self, kind: str) -> str:
        """The base task that reads `kind` records."""
        fits = [k for k in BASE_METRICS if kind in TASKS.get(k).record_kinds]
        if not fits:
            return f"robustness reads {' or '.join(self.record_kinds)} records"
        return f"set base: {{task: {' or '.join(fits)}}}"

    def check_target(self, target: Target) -> None:
        """Whatever the base task needs."""
        self._inner.check_target(target)

    def support_datasets(self, splits: Callable[[str], list[str]]) -> list[tuple[str, str | None]]:
        """The base task's (few-shot examples)."""
        return self._inner.support_datasets(splits)

    def _check_kind(self, records: list[Record]) -> None:
        """The runner checks the dataset's kind before any task runs; this catches records
        handed to `run` directly."""
        kinds = {"qa" if "messages" in r else "labeled" for r in records[:1]}
        for kind in kinds - set(self.kinds()):
            raise BadInputError(
                f"task {self.label}: base task {self._inner.task} reads "
                f"{' or '.join(self.kinds())} records but the dataset holds {kind} records; "
                f"{self.kinds_hint(kind)}"
            )

    def run(
        self, target: Target, records: list[Record], progress: Progress, env: TaskEnv
    ) -> TaskResult:
        """Answer originals, then perturbed copies; consistency and drop per item and kind."""
        self._check_kind(records)
        log = ProblemLog()
        # Internal ids: the base task's items are matched back even when record ids repeat.
        keyed = [{**r, "id": str(i)} for i, r in enumerate(records)]
        first = self._inner.run(target, keyed, progress, env)
        for p in first.problems:
            log.add(records[int(p.id)], p.kind, p.reason)
        # Problems past the base task's listing limit are counted, not listed.
        log.skipped += first.counts.skipped - sum(p.kind == "skipped" for p in first.problems)
        log.errors += first.counts.errors - sum(p.kind == "error" for p in first.problems)
        originals = {str(it["id"]): it for it in first.items}
        metric = self.score_name
        if first.items and metric not in first.items[0].get("scores", {}):
            have = ", ".join(first.items[0].get("scores", {})) or "none"
            raise BadInputError(
                f"task {self.label}: base task {self._inner.task} has no item score {metric!r}; "
                f"it has: {have}"
            )

        copies: list[Record] = []
        made: dict[str, list[tuple[str, int, str]]] = defaultdict(list)
        unchanged: dict[str, int] = defaultdict(int)
        for key in originals:
            rec = records[int(key)]
            found = _input_text(rec)
            if found is None:  # the base task scored it, so this does not happen in practice
                continue
            text, replace = found
            rid = str(rec.get("id") or key)
            for kind in self.perturbations:
                for c in range(self.copies):
                    new = perturb(
                        text,
                        kind,
                        rng_for(env.seed, rid, kind, c),
                        edits=self.edits,
                        synonyms=self._table,
                    )
                    if new == text:
                        unchanged[kind] += 1
                        continue
                    cid = _SEP.join((key, kind, str(c)))
                    copies.append({**replace(new), "id": cid})
                    made[key].append((kind, c, new))
        error = first.error
        second_items: dict[str, dict[str, Any]] = {}
        if copies and error is None:
            progress(task=self.label, message=f"{len(copies)} perturbed copies")
            second = self._inner.run(target, copies, progress, env)
            error = second.error
            second_items = {str(it["id"]): it for it in second.items}
            for p in second.problems:
                key, kind, _ = p.id.split(_SEP)
                log.add(records[int(key)], p.kind, f"perturbed copy ({kind}): {p.reason}")

        items: list[dict[str, Any]] = []
        for key, orig in originals.items():
            rec = records[int(key)]
            if not made.get(key):
                log.add(rec, "skipped", "no perturbation of the chosen kinds changes its text")
                continue
            scored = [
                (kind, c, new, second_items.get(_SEP.join((key, kind, str(c)))))
                for kind, c, new in made[key]
            ]
            if any(it is None for *_, it in scored):
                continue  # its copies were not all scored before the target failed
            items.append(self._item(rec, orig, scored, metric))
        return self._result(items, records, log, error, metric, first, unchanged)

    def _item(
        self,
        rec: Record,
        orig: dict[str, Any],
        scored: list[tuple[str, int, str, dict[str, Any] | None]],
        metric: str,
    ) -> dict[str, Any]:
        base_answer = normalize_answer(str(orig.get("prediction") or ""))
        s0 = float(orig["scores"][metric])
        perturbed = []
        for kind, c, new, it in scored:
            assert it is not None
            perturbed.append(
                {
                    "kind": kind,
                    "copy": c,
                    "input": new,
                    "prediction": it.get("prediction"),
                    "consistent": normalize_answer(str(it.get("prediction") or "")) == base_answer,
                    "score": float(it["scores"][metric]),
                }
            )
        s1 = mean([p["score"] for p in perturbed])
        return {
            "id": rec.get("id"),
            "location": rec.get("location"),
            "input": orig.get("input"),
            "reference": orig.get("reference"),
            "prediction": orig.get("prediction"),
            "perturbed": perturbed,
            "scores": {
                "consistency": mean([float(p["consistent"]) for p in perturbed]),
                metric: s0,
                f"{metric}_perturbed": s1,
                "drop": s0 - s1,
            },
        }

    def _result(
        self,
        items: list[dict[str, Any]],
        records: list[Record],
        log: ProblemLog,
        error: str | None,
        metric: str,
        first: TaskResult,
        unchanged: dict[str, int],
    ) -> TaskResult:
        names = ("consistency", metric, f"{metric}_perturbed", "drop")
        metrics = {m: mean([it["scores"][m] for it in items]) for m in names}
        per_kind: dict[str, Any] = {}
        for kind in self.perturbations:
            rows = []  # (item's original score, its copies of this kind)
            for it in items:
                mine = [p for p in it["perturbed"] if p["kind"] == kind]
                if mine:
                    rows.append((it["scores"][metric], mine))
            cons = mean([mean([float(p["consistent"]) for p in ps]) for _, ps in rows])
            pert = mean([mean([p["score"] for p in ps]) for _, ps in rows])
            orig = mean([s for s, _ in rows])
            per_kind[kind] = {
                "items": len(rows),
                "unchanged_copies": unchanged.get(kind, 0),
                "consistency": cons,
                metric: orig,
                f"{metric}_perturbed": pert,
                "drop": orig - pert,
            }
            if rows:
                metrics[f"consistency.{kind}"] = cons
                metrics[f"{metric}_perturbed.{kind}"] = pert
                metrics[f"drop.{kind}"] = orig - pert
        return result(
            metrics=metrics,
            items=items,
            records=len(records),
            log=log,
            error=error,
            details={
                "base_task": self._inner.task,
                "metric": metric,
                "per_perturbation": per_kind,
                "base_details": first.details,
            },
            prompt={
                **first.prompt,
                "base_task": self._inner.task,
                "perturbations": self.perturbations,
                "copies": self.copies,
                "edits": self.edits,
                "synonyms": self.synonyms,
            },
        )
