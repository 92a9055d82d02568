"""Compare eval runs metric by metric with bootstrap intervals (gating is in gate.py).

Both read EvalRun artifacts (kind "eval_run", name = suite name) from the store; their
`results.json` is `{"tasks": {TASK: {"metrics": {...}, "items": [{"id", "scores": {...}}]}}}`.
Nested metric dicts are flattened with dots (`per_class.billing.f1`); numbers only (lists
such as a confusion matrix and non-finite values are skipped). A metric's value for a run is
the reported one, or the mean of its per-item scores when only those exist.

Differences are against the first run. The interval comes from the per-item scores: paired
over the items both runs scored (matched by id; items in only one run are counted and left
out), or unpaired over each run's items when no id matches. Corpus-level metrics without
per-item scores (BLEU, chrF, macro F1) get a difference but no interval, and so do the
metrics of measured tasks (the run's meta `measured_tasks`, e.g. efficiency timings and
memory: they move with the machine and its load, so a "significant" change would mean
nothing); a gate rule that names one still checks it (gate.py).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from luodi.errors import BadInputError, NotFoundError
from luodi.eval.metrics import higher_is_better
from luodi.eval.stats import DiffCI, bootstrap_diff
from luodi.store import ArtifactInfo, Store

EVAL_RUN = "eval_run"
RESULTS = "results.json"
_STAGES = ("candidate", "staging", "production", "archived")
_MAX_LISTED = 40

Change = Literal["better", "worse", "unchanged", "untested"]


# -- reading runs ------------------------------------------------------------------------
class _Task(BaseModel):
    metrics: dict[str, float]
    items: dict[str, dict[str, float]]  # id -> flattened finite scores, ids unique in the run
    n_items: int
    unusable: int  # items without an id or sharing one: cannot be matched


class _Run(BaseModel):
    info: ArtifactInfo
    tasks: dict[str, _Task]

    @property
    def status(self) -> str:
        return str(self.info.meta.get("status", "complete"))

    @property
    def measured(self) -> frozenset[str]:
        """Labels of the run's tasks whose numbers are measurements (timings, memory)."""
        return frozenset(str(t) for t in self.info.meta.get("measured_tasks") or [])


def _flatten(values: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if not isinstance(values, dict):
        return out
    for key, v in values.items():
        name = f"{prefix}{key}"
        if isinstance(v, dict):
            out.update(_flatten(v, name + "."))
        elif isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out[name] = float(v)
    return out


def _load_run(info: ArtifactInfo) -> _Run:
    path = info.path / RESULTS
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"eval run {info.ref} has no {RESULTS} ({path})") from None
    except (OSError, ValueError) as exc:
        raise BadInputError(f"eval run {info.ref}: cannot read {path}: {exc}") from None
    tasks = data.get("tasks") if isinstance(data, dict) else None
    if not isinstance(tasks, dict):
        raise BadInputError(f"eval run {info.ref}: {path} has no `tasks` mapping")
    out: dict[str, _Task] = {}
    for name, task in tasks.items():
        task = task if isinstance(task, dict) else {}
        raw = task.get("items") if isinstance(task.get("items"), list) else []
        ids = [
            str(it["id"]) if isinstance(it, dict) and it.get("id") is not None else None
            for it in raw
        ]
        seen = Counter(ids)
        items = {
            i: _flatten(it.get("scores"))
            for i, it in zip(ids, raw, strict=True)
            if i and seen[i] == 1
        }
        out[str(name)] = _Task(
            metrics=_flatten(task.get("metrics")),
            items=items,
            n_items=len(raw),
            unusable=len(raw) - len(items),
        )
    return _Run(info=info, tasks=out)


def _target_model(info: ArtifactInfo) -> str | None:
    for p in info.parents:
        if p.kind == "model" and p.role == "target":
            return p.ref
    return None


def _runs_of_model(store: Store, model: ArtifactInfo, suite: str | None) -> list[ArtifactInfo]:
    return [r for r in store.list(EVAL_RUN, name=suite) if _target_model(r) == model.ref]


def resolve_eval_run(store: Store, ref: str, *, like: ArtifactInfo | None = None) -> ArtifactInfo:
    """The eval run `ref` names.

    In order: an eval run `SUITE` (latest) or `SUITE:vN`; a model version (`model:vN`,
    `model@production`), meaning the newest eval run targeting it (of `like`'s suite when
    given); a bare stage (`production`), meaning that stage's version of the model `like`
    targets. NotFoundError says what exists or which run is missing.
    """
    from luodi.registry.stages import resolve_model

    not_found: NotFoundError | None = None
    try:
        return store.resolve(ref, EVAL_RUN)
    except NotFoundError as exc:
        not_found = exc
    except BadInputError:
        if "@" not in ref:  # malformed, and not a `model@stage` reference either
            raise
    suite = like.name if like is not None else None
    stage = ref.strip().lower()
    if stage in _STAGES and like is not None:
        target = _target_model(like)
        if target is None:
            raise BadInputError(
                f"{like.ref} does not target a registered model version, so {ref!r} means "
                "nothing for it; name the baseline eval run as SUITE:vN"
            )
        model_ref = f"{target.partition(':')[0]}@{stage}"
    elif "@" in ref or store.list("model", name=ref.partition(":")[0].strip()):
        model_ref = ref
    elif not_found is not None:
        raise not_found
    else:
        raise BadInputError(f"invalid eval run reference {ref!r}")
    model = resolve_model(store, model_ref)
    runs = _runs_of_model(store, model, suite)
    if not runs:
        of_suite = f" of suite {suite!r}" if suite else ""
        raise NotFoundError(
            f"no eval run{of_suite} targets model {model.ref} ({model_ref}); run "
            f"`luodi eval run` on {model.ref} first"
        )
    return max(runs, key=lambda r: (r.created_at, r.version))


# -- comparing ---------------------------------------------------------------------------
class RunSummary(BaseModel):
    """One compared eval run."""

    ref: str = Field(description="SUITE:vN of the eval run.")
    target: str | None = Field(description="The registered model version it evaluated, if any.")
    status: str = Field(description="complete, or partial when the target failed mid-run.")


class PairInfo(BaseModel):
    """How the items of one task matched between the first run and another run."""

    run: str = Field(description="The run compared with the first.")
    matched: int = Field(description="Item ids present in both runs.")
    only_in_first: int = Field(description="Items only the first run scored (left out).")
    only_in_run: int = Field(description="Items only this run scored (left out).")
    unusable: int = Field(description="Items without an id or with a duplicated id (both runs).")


class MetricDiff(BaseModel):
    """One metric of one run against the first run."""

    run: str = Field(description="The run compared with the first.")
    diff: float | None = Field(description="value(run) − value(first); None when one is missing.")
    ci: DiffCI | None = Field(description="Bootstrap interval from per-item scores, if any.")
    significant: bool = Field(description="The interval excludes 0.")
    change: Change = Field(
        description="better/worse when significant (by the metric's direction), unchanged "
        "when not, untested without per-item scores or for a measured task's metric."
    )


class MetricRow(BaseModel):
    """One metric of one task across all runs."""

    metric: str
    higher_is_better: bool
    measured: bool = Field(
        default=False,
        description="A measurement (timing, memory) of a measured task: no interval, untested.",
    )
    values: list[float | None] = Field(description="Value per run, in the order compared.")
    diffs: list[MetricDiff] = Field(description="Each run after the first against the first.")


class TaskComparison(BaseModel):
    """One task across the runs."""

    task: str
    items: list[int] = Field(description="Number of items per run (0 when a run lacks the task).")
    pairs: list[PairInfo]
    metrics: list[MetricRow]


class Comparison(BaseModel):
    """`compare_runs` result: per task, per metric, values and differences vs the first run."""

    runs: list[RunSummary]
    tasks: list[TaskComparison]
    confidence: float
    n_resamples: int
    seed: int


def _value(task: _Task | None, metric: str) -> float | None:
    if task is None:
        return None
    if metric in task.metrics:
        return task.metrics[metric]
    scores = [s[metric] for s in task.items.values() if metric in s]
    return float(np.mean(scores)) if scores else None


def _diff_ci(
    base: _Task | None, other: _Task | None, metric: str, *, n: int, seed: int, conf: float
) -> DiffCI | None:
    if base is None or other is None:
        return None
    both = [i for i in base.items if i in other.items]
    pairs = [
        (base.items[i][metric], other.items[i][metric])
        for i in both
        if metric in base.items[i] and metric in other.items[i]
    ]
    if pairs:
        a, b = zip(*pairs, strict=True)
        return bootstrap_diff(a, b, paired=True, n=n, seed=seed, confidence=conf)
    if both:  # the same items, but this metric is not scored per item on both sides
        return None
    a = [s[metric] for s in base.items.values() if metric in s]
    b = [s[metric] for s in other.items.values() if metric in s]
    if not a or not b:
        return None
    return bootstrap_diff(a, b, paired=False, n=n, seed=seed, confidence=conf)


def _change(ci: DiffCI | None, up: bool) -> Change:
    if ci is None:
        return "untested"
    if not ci.significant:
        return "unchanged"
    return "better" if (ci.low > 0) == up else "worse"


def _metric_names(tasks: list[_Task | None]) -> list[str]:
    names: dict[str, None] = {}
    for t in tasks:
        if t is not None:
            names.update(dict.fromkeys(t.metrics))
            for s in t.items.values():
                names.update(dict.fromkeys(s))
    return list(names)


def _pair(base: _Task | None, other: _Task | None, run: str) -> PairInfo:
    a = base.items if base else {}
    b = other.items if other else {}
    return PairInfo(
        run=run,
        matched=sum(1 for i in a if i in b),
        only_in_first=sum(1 for i in a if i not in b),
        only_in_run=sum(1 for i in b if i not in a),
        unusable=(base.unusable if base else 0) + (other.unusable if other else 0),
    )


def _compare(runs: list[_Run], *, n: int, seed: int, confidence: float) -> Comparison:
    task_names: dict[str, None] = {}
    for r in runs:
        task_names.update(dict.fromkeys(r.tasks))
    tasks: list[TaskComparison] = []
    for name in task_names:
        per_run = [r.tasks.get(name) for r in runs]
        base = per_run[0]
        measured = any(name in r.measured for r in runs)
        rows: list[MetricRow] = []
        for metric in _metric_names(per_run):
            up = higher_is_better(metric)
            values = [_value(t, metric) for t in per_run]
            diffs = []
            for r, t, v in zip(runs[1:], per_run[1:], values[1:], strict=True):
                ci = (
                    None if measured else _diff_ci(base, t, metric, n=n, seed=seed, conf=confidence)
                )
                diffs.append(
                    MetricDiff(
                        run=r.info.ref,
                        diff=None if v is None or values[0] is None else v - values[0],
                        ci=ci,
                        significant=bool(ci and ci.significant),
                        change=_change(ci, up),
                    )
                )
            rows.append(
                MetricRow(
                    metric=metric,
                    higher_is_better=up,
                    measured=measured,
                    values=values,
                    diffs=diffs,
                )
            )
        tasks.append(
            TaskComparison(
                task=name,
                items=[t.n_items if t else 0 for t in per_run],
                pairs=[
                    _pair(base, t, r.info.ref) for r, t in zip(runs[1:], per_run[1:], strict=True)
                ],
                metrics=rows,
            )
        )
    return Comparison(
        runs=[
            RunSummary(ref=r.info.ref, target=_target_model(r.info), status=r.status) for r in runs
        ],
        tasks=tasks,
        confidence=confidence,
        n_resamples=n,
        seed=seed,
    )


def compare_runs(
    store: Store, refs: list[str], *, n: int = 2000, seed: int = 0, confidence: float = 0.95
) -> Comparison:
    """Compare two or more eval runs; every run after the first is set against the first.

    `refs` are resolved by `resolve_eval_run`, model and stage refs in the suite of the first
    ref that names an eval run. Per task
    and metric: each run's value, the difference from the first, and a percentile bootstrap
    interval (`n` resamples, `seed`, `confidence`) of the per-item score difference, paired
    over items matched by id. Deterministic for a given seed.
    """
    if len(refs) < 2:
        raise BadInputError(f"compare needs at least two eval runs, got {len(refs)}")
    anchor: ArtifactInfo | None = None  # the first ref naming an eval run fixes the suite
    for ref in refs:
        try:
            anchor = store.resolve(ref, EVAL_RUN)
            break
        except BadInputError:
            continue
    infos = []
    for ref in refs:
        infos.append(resolve_eval_run(store, ref, like=anchor))
        anchor = anchor or infos[-1]
    return _compare([_load_run(i) for i in infos], n=n, seed=seed, confidence=confidence)
