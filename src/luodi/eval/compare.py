"""Compare eval runs metric by metric with bootstrap intervals, and gate a candidate on rules.

Both read EvalRun artifacts (kind "eval_run", name = suite name) from the store; their
`results.json` is `{"tasks": {TASK: {"metrics": {...}, "items": [{"id", "scores": {...}}]}}}`.
Nested metric dicts are flattened with dots (`per_class.billing.f1`); numbers only (lists
such as a confusion matrix and non-finite values are skipped). A metric's value for a run is
the reported one, or the mean of its per-item scores when only those exist.

Differences are against the first run. The interval comes from the per-item scores: paired
over the items both runs scored (matched by id; items in only one run are counted and left
out), or unpaired over each run's items when no id matches. Corpus-level metrics without
per-item scores (BLEU, chrF, macro F1) get a difference but no interval. The gate rules file:

```yaml
# luodi eval gate CANDIDATE --against production --rules gate.yaml
thresholds:
  faq.token_f1: {min: 0.6}
  wiki.perplexity: {max: 40}
no_regression:
  - faq.exact_match
  - {metric: tickets.macro_f1, margin: 0.02}
margin: 0.0
```
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from luodi.errors import BadInputError, NotFoundError
from luodi.eval.metrics import higher_is_better
from luodi.eval.stats import DiffCI, bootstrap_diff
from luodi.store import ArtifactInfo, Store

EVAL_RUN = "eval_run"
EVAL_GATE = "eval_gate"
RESULTS = "results.json"
GATE_HEADER = "# luodi eval gate CANDIDATE --against production --rules {file}\n"
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
        "when not, untested without per-item scores."
    )


class MetricRow(BaseModel):
    """One metric of one task across all runs."""

    metric: str
    higher_is_better: bool
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
        rows: list[MetricRow] = []
        for metric in _metric_names(per_run):
            up = higher_is_better(metric)
            values = [_value(t, metric) for t in per_run]
            diffs = []
            for r, t, v in zip(runs[1:], per_run[1:], values[1:], strict=True):
                ci = _diff_ci(base, t, metric, n=n, seed=seed, conf=confidence)
                diffs.append(
                    MetricDiff(
                        run=r.info.ref,
                        diff=None if v is None or values[0] is None else v - values[0],
                        ci=ci,
                        significant=bool(ci and ci.significant),
                        change=_change(ci, up),
                    )
                )
            rows.append(MetricRow(metric=metric, higher_is_better=up, values=values, diffs=diffs))
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


# -- gate --------------------------------------------------------------------------------
class Threshold(BaseModel):
    """Bounds the candidate's value of one metric must stay within."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = Field(default=None, description="Fail when the value is below this.")
    max: float | None = Field(default=None, description="Fail when the value is above this.")

    @model_validator(mode="after")
    def _bounds(self) -> Threshold:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class RegressionRule(BaseModel):
    """A metric the candidate must not be significantly worse at than the baseline."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(description="TASK.METRIC, e.g. faq.exact_match.")
    margin: float | None = Field(
        default=None,
        ge=0,
        description="Tolerated drop in metric units; default: the rules' `margin`.",
    )


class GateRules(BaseModel):
    """Release rules for `luodi eval gate`: thresholds and no-significant-regression checks."""

    model_config = ConfigDict(extra="forbid")

    thresholds: dict[str, Threshold] = Field(
        default_factory=dict,
        description="TASK.METRIC -> {min, max}: bounds on the candidate's value.",
    )
    no_regression: list[RegressionRule] = Field(
        default_factory=list,
        description="TASK.METRIC (or {metric, margin}) that must not get significantly worse "
        "than the baseline: fails when the whole confidence interval of the change lies "
        "beyond the margin on the worse side.",
    )
    margin: float = Field(default=0.0, ge=0, description="Default tolerated drop per metric.")
    require_complete: bool = Field(
        default=True, description="Fail when either run is partial (the target failed mid-run)."
    )
    confidence: float = Field(default=0.95, gt=0, lt=1, description="Confidence level.")
    n_resamples: int = Field(default=2000, ge=100, description="Bootstrap resamples.")
    seed: int = Field(default=0, description="Bootstrap seed; same seed, same verdict.")

    @field_validator("no_regression", mode="before")
    @classmethod
    def _plain_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"metric": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _some_rule(self) -> GateRules:
        if not self.thresholds and not self.no_regression:
            raise ValueError("no rules: give `thresholds`, `no_regression` or both")
        return self


def load_gate_rules(path: str | Path) -> GateRules:
    """GateRules from a YAML file; a missing file, invalid YAML or unknown keys are bad input."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"gate rules {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise BadInputError(f"gate rules {p} are not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise BadInputError(f"gate rules {p} must be a mapping (thresholds, no_regression, ...)")
    try:
        return GateRules.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or 'rules'}: {e['msg']}" for e in exc.errors()
        )
        raise BadInputError(f"invalid gate rules {p}: {problems}") from None


def gate_rules_yaml(rules: GateRules, file: str = "gate.yaml") -> str:
    """`rules` as a YAML file beginning with the command that uses it."""
    body = yaml.safe_dump(
        rules.model_dump(mode="json", exclude_none=True), allow_unicode=True, sort_keys=False
    )
    return GATE_HEADER.format(file=file) + body


class Check(BaseModel):
    """One gate rule's outcome."""

    name: str = Field(description="The rule, e.g. `threshold faq.token_f1` or `complete`.")
    passed: bool
    detail: str = Field(description="Values behind the outcome, in words.")
    value: float | None = Field(default=None, description="The candidate's value, if any.")
    ci: DiffCI | None = Field(default=None, description="Interval of candidate − baseline.")


class GateVerdict(BaseModel):
    """`gate` result; stored as the meta of an "eval_gate" artifact."""

    passed: bool = Field(description="Every check passed (CLI exit code 0, else 1).")
    candidate: str = Field(description="SUITE:vN of the candidate eval run.")
    against: str = Field(description="SUITE:vN of the baseline eval run.")
    checks: list[Check]
    rules: GateRules
    ref: str | None = Field(default=None, description="The stored eval_gate artifact, NAME:vN.")


def _split_key(key: str, runs: list[_Run], need: str) -> tuple[str, str]:
    """(task, metric) for a rule key, the longest task name that fits; BadInputError naming
    the metrics that exist otherwise."""
    for task in sorted({t for r in runs for t in r.tasks}, key=len, reverse=True):
        metric = key[len(task) + 1 :]
        if key.startswith(task + ".") and all(
            _value(r.tasks.get(task), metric) is not None for r in runs
        ):
            return task, metric
    names: set[str] = set.intersection(
        *({f"{t}.{m}" for t, task in r.tasks.items() for m in _metric_names([task])} for r in runs)
    )
    listed = sorted(names)
    more = f" ... and {len(listed) - _MAX_LISTED} more" if len(listed) > _MAX_LISTED else ""
    raise BadInputError(
        f"gate rule {key!r} is not a metric of {need}; metrics: "
        f"{', '.join(listed[:_MAX_LISTED]) or 'none'}{more}"
    )


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _regression_check(
    rule: RegressionRule, task: str, metric: str, rules: GateRules, base: _Run, cand: _Run
) -> Check:
    margin = rules.margin if rule.margin is None else rule.margin
    up = higher_is_better(metric)
    b, c = base.tasks[task], cand.tasks[task]
    value, base_value = _value(c, metric) or 0.0, _value(b, metric) or 0.0  # both exist
    ci = _diff_ci(b, c, metric, n=rules.n_resamples, seed=rules.seed, conf=rules.confidence)
    sign = 1.0 if up else -1.0  # worse means lower for scores, higher for costs
    tolerated = f"tolerated {'drop' if up else 'rise'} {_fmt(margin)}"
    if ci is None:
        diff = value - base_value
        passed = sign * diff >= -margin
        detail = f"diff {diff:+.4g}; no per-item scores, point values compared; {tolerated}"
    else:
        # Fail only when even the bound nearest to "no change" is worse than the margin.
        passed = sign * (ci.high if up else ci.low) >= -margin
        pair = _pair(b, c, cand.info.ref)
        n_items = ci.n_a if ci.paired else ci.n_a + ci.n_b
        detail = (
            f"diff {ci.diff:+.4g} [{ci.confidence:.0%} CI {ci.low:+.4g}, {ci.high:+.4g}] over "
            f"{n_items} {'paired' if ci.paired else 'unpaired'} items "
            f"({pair.only_in_first + pair.only_in_run} in one run only, left out); {tolerated}"
        )
    detail = f"{_fmt(base_value)} -> {_fmt(value)}, {detail}"
    return Check(
        name=f"no_regression {rule.metric}", passed=passed, detail=detail, value=value, ci=ci
    )


def _threshold_check(key: str, task: str, metric: str, bound: Threshold, cand: _Run) -> Check:
    value = _value(cand.tasks[task], metric) or 0.0  # exists: checked by _split_key
    fails = []
    if bound.min is not None and value < bound.min:
        fails.append(f"below min {_fmt(bound.min)}")
    if bound.max is not None and value > bound.max:
        fails.append(f"above max {_fmt(bound.max)}")
    limits = ", ".join(f"{k} {_fmt(v)}" for k, v in bound.model_dump().items() if v is not None)
    detail = f"{_fmt(value)} " + ("; ".join(fails) if fails else f"within {limits}")
    return Check(name=f"threshold {key}", passed=not fails, detail=detail, value=value)


def _evaluate(cand: _Run, base: _Run, rules: GateRules) -> list[Check]:
    """The checks of `rules` for two loaded runs; every rule key is validated before any runs."""
    need_cand = f"the candidate run {cand.info.ref}"
    need_both = f"both {cand.info.ref} and {base.info.ref}"
    keys = {k: _split_key(k, [cand], need_cand) for k in rules.thresholds}
    regs = [(r, *_split_key(r.metric, [cand, base], need_both)) for r in rules.no_regression]
    checks: list[Check] = []
    if rules.require_complete:
        partial = [r.info.ref for r in (cand, base) if r.status != "complete"]
        detail = f"partial runs: {', '.join(partial)}" if partial else "both runs complete"
        checks.append(Check(name="complete", passed=not partial, detail=detail))
    checks += [_threshold_check(k, *keys[k], b, cand) for k, b in rules.thresholds.items()]
    checks += [_regression_check(r, t, m, rules, base, cand) for r, t, m in regs]
    return checks


def gate(
    store: Store, candidate_ref: str, against_ref: str, rules: GateRules, *, save: bool = True
) -> GateVerdict:
    """Check the candidate eval run against thresholds and a baseline run; store the verdict.

    `against_ref` may be an eval run, a model version or a bare stage (`production`: the
    newest eval run of the same suite on the production version of the candidate's model);
    see `resolve_eval_run`. Rule keys naming no metric raise BadInputError listing the
    metrics. With `save` the verdict becomes the meta (and verdict.json, rules.yaml) of a
    new "eval_gate" artifact named like the suite, parents the candidate (role "candidate")
    and the baseline (role "baseline"); `verdict.ref` names it.
    """
    cand_info = resolve_eval_run(store, candidate_ref)
    base_info = resolve_eval_run(store, against_ref, like=cand_info)
    cand, base = _load_run(cand_info), _load_run(base_info)
    checks = _evaluate(cand, base, rules)
    verdict = GateVerdict(
        passed=all(c.passed for c in checks),
        candidate=cand_info.ref,
        against=base_info.ref,
        checks=checks,
        rules=rules,
    )
    if not save:
        return verdict
    meta = verdict.model_dump(mode="json", exclude={"ref"})
    with store.create(
        EVAL_GATE,
        cand_info.name,
        parents=[(cand_info, "candidate"), (base_info, "baseline")],
        meta=meta,
    ) as draft:
        (draft.path / "verdict.json").write_text(
            json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8"
        )
        (draft.path / "rules.yaml").write_text(gate_rules_yaml(rules), encoding="utf-8")
    assert draft.artifact is not None
    return verdict.model_copy(update={"ref": draft.artifact.ref})
