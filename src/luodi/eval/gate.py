"""Release gates: a candidate eval run against a baseline, on thresholds and no-regression rules.

The rules file:

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

A no-regression check fails only when the whole bootstrap interval of the difference lies
beyond the margin on the worse side; the verdict is stored as an "eval_gate" artifact whose
parents are the two runs. Rules name their metrics one by one, so the metrics of a measured
task (efficiency's timings and memory, which `compare` leaves untested) are checked exactly
when a threshold or no-regression rule names them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from luodi.errors import BadInputError
from luodi.eval.compare import (
    _MAX_LISTED,
    _diff_ci,
    _load_run,
    _metric_names,
    _pair,
    _Run,
    _value,
    resolve_eval_run,
)
from luodi.eval.metrics import higher_is_better
from luodi.eval.stats import DiffCI
from luodi.store import Store
from luodi.yamlio import read_yaml

EVAL_GATE = "eval_gate"
GATE_HEADER = "# luodi eval gate CANDIDATE --against production --rules {file}\n"


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
    data = read_yaml(p, "gate rules")
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
