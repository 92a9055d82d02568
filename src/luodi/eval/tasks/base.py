"""The eval task framework: task configs, results, the registry, and the batch loop.

A task is a pydantic model (its fields are the task's parameters, unknown keys rejected) with
ClassVars `task_type` (its name in a suite's `task:` key), `record_kinds` (what datasets it
reads; an instance may narrow them with `kinds()`), `main_score` (the per-item score reports
rank items by) and `measured` (its numbers are measurements such as timings, not
reproducible), and a `run(target, records, progress, env)` method returning a TaskResult.
Tasks register under their name in `TASKS`; a suite entry is validated against the class its
`task:` names.

Bad rows never stop a task: a row the task cannot score (no options, no answer) is *skipped*
and a row whose answer key cannot be right (not among the choices) is an *error*; both are
listed in `problems` with the record's id and location (the source line or row) and counted,
and neither enters the metrics. When the target fails mid-task (a server dies, a request
times out) the items scored so far are kept, the task is marked `partial` with the reason,
and the metrics say so: they cover only `counts.scored` items.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from luodi.data.records import Record
from luodi.errors import BadInputError
from luodi.eval.targets import Target, TargetError
from luodi.progress import Progress
from luodi.registry import Registry
from luodi.store import ArtifactInfo, Store

_LABEL = re.compile(r"^[A-Za-z0-9][\w\-]{0,63}$")
# Problems kept in full in results.json; beyond that only the count grows.
MAX_PROBLEMS = 1000
# Item texts kept in results.json: enough to judge an item, bounded for long documents.
PREVIEW_CHARS = 500
TEXT_CHARS = 2000

T = TypeVar("T")
R = TypeVar("R")


class EvalTask(BaseModel):
    """Parameters every task shares; subclasses add their own and implement `run`."""

    model_config = ConfigDict(extra="forbid")

    task_type: ClassVar[str] = ""
    record_kinds: ClassVar[tuple[str, ...]] = ()
    main_score: ClassVar[str | None] = None
    """The per-item score reports rank items by (best and worst items)."""
    measured: ClassVar[bool] = False
    """True when the numbers are measurements (timings, memory) that differ run to run:
    comparisons test no significance on them unless a gate rule names them."""

    task: str = Field(
        description=(
            "The task type: choice, generate, classify, perplexity, robustness, safety, "
            "efficiency or retrieval."
        )
    )
    dataset: str = Field(description="The dataset version to evaluate on, NAME or NAME:vN.")
    split: str | None = Field(
        default=None,
        description=(
            "The split to evaluate. Default: 'test' when the dataset has one, otherwise every "
            "record ('unsplit' selects records without a split)."
        ),
    )
    name: str | None = Field(
        default=None,
        description=(
            "Label of this task in results, comparisons and gate rules (`name.metric`); "
            "letters, digits, '_' and '-'. Default: the task type. Unique within a suite."
        ),
    )
    limit: int | None = Field(
        default=None, ge=1, description="Evaluate only the first N records, in dataset order."
    )
    batch_size: int = Field(
        default=128,
        ge=1,
        description=(
            "Items sent to the target per call: progress and partial results advance in these "
            "steps. The target groups them into forward batches itself (the run's batch size)."
        ),
    )

    @field_validator("name")
    @classmethod
    def _check_label(cls, v: str | None) -> str | None:
        if v is not None and not _LABEL.match(v):
            raise ValueError(
                f"task name {v!r} must be letters, digits, '_' or '-' (it is used as "
                "`name.metric` in gate rules)"
            )
        return v

    @property
    def label(self) -> str:
        """The task's name in results: `name`, or the task type."""
        return self.name or self.task

    def kinds(self) -> tuple[str, ...]:
        """The record kinds this task, as configured, can read (checked before any work);
        `record_kinds` unless the configuration narrows them."""
        return self.record_kinds

    def kinds_hint(self, kind: str) -> str:
        """What to change when the dataset holds `kind` records, which `kinds()` excludes
        ("" when there is nothing to say but the kinds)."""
        return ""

    def check_target(self, target: Target) -> None:
        """Raise BadInputError when `target` cannot run this task (checked before any work)."""

    def support_datasets(self, splits: Callable[[str], list[str]]) -> list[tuple[str, str | None]]:
        """(dataset ref, split) pairs read besides the evaluated one (e.g. few-shot examples);
        `splits(ref)` lists a dataset's splits."""
        return []

    def needs_target(self) -> bool:
        """Whether this task, as configured, calls the target. A suite whose tasks all say no
        runs without one (`luodi eval run --suite S` with no target: target kind "none")."""
        return True

    def inputs(self, store: Store) -> list[tuple[ArtifactInfo, str]]:
        """Artifacts other than datasets this task reads (e.g. a knowledge-base version), each
        with its role, resolved before any work: they become parents of the eval run, and the
        runner hands them to `run` as `env.extra["inputs"]` so the task reads exactly them.
        NotFoundError/BadInputError here stops the run before anything is scored."""
        return []

    @abstractmethod
    def run(
        self, target: Target, records: list[Record], progress: Progress, env: TaskEnv
    ) -> TaskResult:
        """Score `records` (the evaluated split, after `limit`) with `target`.

        Malformed rows go to the result's problems, a TargetError mid-way makes it partial
        (see `in_batches`); BadInputError for a configuration that cannot work at all.
        """


class Problem(BaseModel):
    """A record the task could not use: skipped (cannot be scored) or an error (bad key)."""

    id: str = Field(description="The record's id.")
    location: str | None = Field(default=None, description="Where it came from (line/row).")
    kind: Literal["skipped", "error"] = Field(description="skipped or error.")
    reason: str = Field(description="Why, in words a user can act on.")


class TaskCounts(BaseModel):
    """How many records a task saw and what became of them."""

    records: int = Field(description="Records read from the dataset (after `limit`).")
    scored: int = Field(description="Items scored: what the metrics cover.")
    skipped: int = Field(default=0, description="Rows that could not be scored (malformed).")
    errors: int = Field(default=0, description="Rows whose answer key is invalid.")


class TaskResult(BaseModel):
    """What one task produced: metrics, per-item results, problems and status."""

    metrics: dict[str, float] = Field(description="Aggregate metrics over the scored items.")
    items: list[dict[str, Any]] = Field(
        description="Per item: id, input, reference/prediction, `scores` {metric: value}."
    )
    status: Literal["complete", "partial"] = "complete"
    error: str | None = Field(default=None, description="Why the task is partial.")
    counts: TaskCounts
    problems: list[Problem] = []
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="Breakdowns (per subject, per class, confusion matrix).",
    )
    prompt: dict[str, Any] = Field(
        default_factory=dict, description="Prompt templates and settings the task used."
    )


@dataclass
class TaskEnv:
    """What the runner gives a task besides its records: the seed and extra datasets."""

    seed: int
    load: Callable[[str, str | None], list[Record]]
    """Records of (dataset ref, split) for `support_datasets` (already resolved and checked)."""
    splits: Callable[[str], list[str]]
    """The splits of a dataset ref."""
    extra: dict[str, Any] = field(default_factory=dict)


TASKS: Registry[type[EvalTask]] = Registry("eval task")


def register(cls: type[EvalTask]) -> type[EvalTask]:
    """Class decorator: add a task class to TASKS under its `task_type`."""
    TASKS.add(cls.task_type, cls)
    return cls


class ProblemLog:
    """Collects problems of a task; counts every one, keeps the first MAX_PROBLEMS."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.skipped = 0
        self.errors = 0

    def add(self, rec: Record, kind: Literal["skipped", "error"], reason: str) -> None:
        """Record that `rec` was skipped or is an error, and why."""
        if kind == "error":
            self.errors += 1
        else:
            self.skipped += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(
                Problem(
                    id=str(rec.get("id") or ""),
                    location=rec.get("location"),
                    kind=kind,
                    reason=reason,
                )
            )


def in_batches(
    items: Sequence[T],
    batch_size: int,
    score: Callable[[Sequence[T]], list[R]],
    progress: Progress,
    label: str,
) -> tuple[list[R], str | None]:
    """Score `items` batch by batch; (results so far, failure reason or None).

    A TargetError stops the loop: the results of the batches before it are returned with its
    message, so the task can be stored as partial instead of lost or averaged as complete.
    """
    progress(task=label, total=len(items))
    out: list[R] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        try:
            scored = score(chunk)
        except TargetError as exc:
            return out, exc.message
        out.extend(scored)
        progress(task=label, advance=len(chunk))
    return out, None


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean; 0.0 for no values (a task with nothing scored reports zeros)."""
    return float(sum(values) / len(values)) if values else 0.0


def result(
    *,
    metrics: dict[str, float],
    items: list[dict[str, Any]],
    records: int,
    log: ProblemLog,
    error: str | None,
    details: dict[str, Any] | None = None,
    prompt: dict[str, Any] | None = None,
) -> TaskResult:
    """A TaskResult with counts from `log`; partial when `error` is set."""
    return TaskResult(
        metrics=metrics,
        items=items,
        status="partial" if error else "complete",
        error=error,
        counts=TaskCounts(
            records=records, scored=len(items), skipped=log.skipped, errors=log.errors
        ),
        problems=log.problems,
        details=details or {},
        prompt=prompt or {},
    )


def preview(text: str | None, limit: int = PREVIEW_CHARS) -> str | None:
    """`text` cut to `limit` characters, marked with "…" when cut (None stays None)."""
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + "…"


def require(target: Target, capability: str, task: str, hint: str) -> None:
    """BadInputError when `target` lacks `capability` (naming the task and what to do)."""
    if capability not in target.capabilities:
        have = ", ".join(sorted(target.capabilities)) or "nothing"
        raise BadInputError(
            f"task {task!r} needs a target that can {capability.replace('_', ' ')}; "
            f"{target.ref} can: {have}. {hint}"
        )
