"""Eval suites: a named list of tasks over dataset versions, read from YAML.

    # luodi eval run MODEL --suite suite.yaml
    name: faq-eval
    tasks:
      - {task: choice, dataset: ceval, few_shot: 5, few_shot_dataset: ceval-dev}
      - {task: generate, dataset: faq, split: test, max_new_tokens: 64}
      - {task: perplexity, dataset: manuals, name: manuals-ppl}

Each entry is validated against the parameters of the task class its `task:` names (unknown
keys are errors, naming the entry). Task labels (`name`, default the task type) must be
unique: results, comparisons and gate rules (`label.metric`) are keyed by them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator

from luodi.errors import BadInputError
from luodi.eval.tasks import TASKS, EvalTask
from luodi.store.artifacts import check_name
from luodi.yamlio import read_yaml

HEADER = "# luodi eval run TARGET --suite suite.yaml\n"


def _task(entry: Any, index: int) -> EvalTask:
    """The task object of suite entry `index` (0-based), validated against its class."""
    if isinstance(entry, EvalTask):
        return entry
    if not isinstance(entry, dict):
        raise BadInputError(f"suite task {index + 1} must be a mapping, got {entry!r}")
    kind = entry.get("task")
    if not isinstance(kind, str):
        raise BadInputError(
            f"suite task {index + 1} has no `task:` (one of {', '.join(TASKS.names())})"
        )
    cls = TASKS.get(kind)
    try:
        return cls.model_validate(entry)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or kind}: {e['msg']}" for e in exc.errors()
        )
        raise BadInputError(f"suite task {index + 1} ({kind}): {problems}") from None


class Suite(BaseModel):
    """A named list of tasks; an eval run scores one target on all of them."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        description="Suite name; its runs are stored as versions of eval_run NAME (NAME:vN)."
    )
    description: str | None = Field(default=None, description="What the suite checks.")
    tasks: list[SerializeAsAny[EvalTask]] = Field(
        min_length=1,
        description="Tasks: {task: TYPE, dataset: REF, split, name, ...task parameters}.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        try:
            return check_name(v)
        except BadInputError as exc:
            raise ValueError(exc.message) from None

    @field_validator("tasks", mode="before")
    @classmethod
    def _typed(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        tasks = [_task(entry, i) for i, entry in enumerate(v)]
        seen: dict[str, int] = {}
        for i, t in enumerate(tasks):
            if t.label in seen:
                raise BadInputError(
                    f"suite tasks {seen[t.label] + 1} and {i + 1} are both called {t.label!r}; "
                    "give each a distinct `name`"
                )
            seen[t.label] = i
        return tasks

    def task(self, label: str) -> EvalTask:
        """The task called `label`; BadInputError naming the suite's tasks otherwise."""
        for t in self.tasks:
            if t.label == label:
                return t
        labels = ", ".join(t.label for t in self.tasks)
        raise BadInputError(f"suite {self.name} has no task {label!r}; tasks: {labels}")

    def to_yaml(self) -> str:
        """The suite as YAML, every parameter explicit, with the command that runs it."""
        data = self.model_dump(mode="json", exclude_none=True)
        return HEADER + yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def parse_suite(data: Any, *, source: str = "suite") -> Suite:
    """A Suite from parsed YAML/JSON data; BadInputError saying what is wrong and where."""
    if not isinstance(data, dict):
        raise BadInputError(f"{source} must be a mapping with `name` and `tasks`")
    try:
        return Suite.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'suite'}: {e['msg']}" for e in exc.errors()
        )
        raise BadInputError(f"{source}: {problems}") from None


def load_suite(path: Path | str) -> Suite:
    """The suite in YAML file `path`; BadInputError for a missing file, bad YAML or bad tasks."""
    return parse_suite(read_yaml(path, "suite file"), source=str(path))
