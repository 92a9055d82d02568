"""`luodi train sweep`: grid or random search over TrainConfig fields; the best run registered.

How a sweep registers its result (the whole contract):

1. Every trial's TrainConfig is built and validated before anything trains: unknown fields,
   invalid values, a metric that needs validation data the trials do not have, datasets that
   do not exist, trials that would register under different names. Any of these is a
   BadInputError and nothing is recorded.
2. Each trial is an ordinary `run_train` run registered as the next version of
   `<name>-trial` (`name` is the TrainConfig's model name): a trial is a complete, loadable
   model version with its own run, metrics and lineage, but never a version of `<name>`, so
   `<name>` (and `<name>@stage` references) only ever see sweep winners.
3. A trial that fails (bad input for its values, a crash, no usable metric) is recorded as
   failed and the sweep goes on; a Ctrl-C stops the sweep. When every trial fails the sweep
   raises (BadInputError when every failure was bad input, StageFailedError otherwise) and
   registers nothing under `<name>`.
4. The best trial (lowest `metric`, or highest with `mode: max`; the earliest on a tie) is
   registered as the next version of `<name>`: its files (hard-linked where the filesystem
   allows: artifacts are immutable) plus `sweep.yaml` (the sweep config) and `sweep.json`
   (every trial's params and metric). Its parents are the trial's own parents (base model,
   datasets) and the trial version itself with role "trial"; its meta is the trial's plus a
   `sweep` entry (metric, mode, value, params, trial ref, sweep run id).
5. The sweep itself is a run of kind "sweep" whose metric series holds each trial's metric
   at step = trial number.

Random search draws every trial's values from `random.Random(seed)`, so the same sweep
config always plans the same trials.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from luodi.data.datasets import resolve as resolve_dataset
from luodi.errors import BadInputError, LuodiError, StageFailedError
from luodi.progress import Progress, no_progress
from luodi.store import ArtifactInfo, Store
from luodi.store.artifacts import check_name
from luodi.store.hashing import MANIFEST
from luodi.store.runs import Runs
from luodi.train.config import TrainConfig, load_train_config
from luodi.train.runner import RUN_KIND, run_train
from luodi.yamlio import read_yaml

SWEEP_KIND = "sweep"
TRIAL_SUFFIX = "-trial"
SWEEP_HEADER = "# luodi train sweep --config {file}\n"
# Fields a sweep sets itself (name) or cannot honour per trial (resume).
_RESERVED = ("name", "resume")
_SIGNIFICANT = 4


class RangeSpec(BaseModel):
    """A numeric range random search draws from."""

    model_config = ConfigDict(extra="forbid")

    low: float = Field(description="Lowest value (inclusive).")
    high: float = Field(description="Highest value (inclusive).")
    log: bool = Field(
        default=False,
        description="Draw uniformly in log space (learning rates, weight decay); needs low > 0.",
    )
    integer: bool = Field(
        default=False, description="Round draws to whole numbers (lora_r, batch_size, ...)."
    )

    @model_validator(mode="after")
    def _check(self) -> RangeSpec:
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self

    def draw(self, rng: random.Random) -> float | int:
        """One value from this range using `rng` (4 significant digits for floats)."""
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = rng.uniform(self.low, self.high)
        if self.integer:
            return min(max(round(value), math.ceil(self.low)), math.floor(self.high))
        # Rounded so trial tables and configs read well; clamped so rounding stays in range.
        return min(max(float(f"{value:.{_SIGNIFICANT}g}"), self.low), self.high)


class SweepConfig(BaseModel):
    """A hyper-parameter search over TrainConfig fields (`luodi train sweep --config FILE`)."""

    model_config = ConfigDict(extra="forbid")

    config: str | None = Field(
        default=None,
        description=(
            "TrainConfig YAML every trial starts from (a path relative to the sweep file)."
        ),
    )
    train: dict[str, Any] = Field(
        default_factory=dict,
        description="TrainConfig fields set for every trial, on top of `config`.",
    )
    grid: dict[str, list[Any]] | None = Field(
        default=None,
        description=(
            "Grid search: TrainConfig field -> values; one trial per combination, in order."
        ),
    )
    random: dict[str, RangeSpec | list[Any]] | None = Field(
        default=None,
        description=(
            "Random search: TrainConfig field -> a range {low, high, log, integer} or a list "
            "of values to choose from; `trials` draws."
        ),
    )
    trials: int | None = Field(
        default=None, ge=1, description="Number of random-search trials (random search only)."
    )
    seed: int = Field(default=0, description="Seed of the random-search draws.")
    metric: str = Field(
        default="eval_loss",
        description=(
            "Final metric that ranks trials (eval_loss, eval_ppl, train_loss, ... as recorded "
            "in the version's metrics)."
        ),
    )
    mode: Literal["min", "max"] = Field(
        default="min", description="min: the lowest metric wins; max: the highest wins."
    )

    @model_validator(mode="after")
    def _check(self) -> SweepConfig:
        if (self.grid is None) == (self.random is None):
            raise ValueError("give exactly one of grid or random")
        if self.grid is not None:
            if not self.grid:
                raise ValueError("grid names no fields")
            empty = [k for k, v in self.grid.items() if not v]
            if empty:
                raise ValueError(f"grid fields without values: {', '.join(empty)}")
            if self.trials is not None:
                raise ValueError("trials applies to random search only (a grid runs every point)")
        if self.random is not None:
            if not self.random:
                raise ValueError("random names no fields")
            empty = [k for k, v in self.random.items() if isinstance(v, list) and not v]
            if empty:
                raise ValueError(f"random fields with empty value lists: {', '.join(empty)}")
            if self.trials is None:
                raise ValueError("random search needs trials (how many draws)")
        return self

    @property
    def space(self) -> dict[str, Any]:
        """The searched fields (grid or random) and their values or ranges."""
        return dict(self.grid if self.grid is not None else self.random or {})


class TrialResult(BaseModel):
    """One trial of a sweep."""

    index: int = Field(description="Trial number, from 1.")
    params: dict[str, Any] = Field(description="The searched fields' values of this trial.")
    status: Literal["succeeded", "failed"]
    metric: float | None = Field(default=None, description="The sweep metric's final value.")
    model: str | None = Field(default=None, description="The trial's model version.")
    run_id: str | None = Field(default=None, description="The trial's training run.")
    error: str | None = None


class SweepResult(BaseModel):
    """What a finished sweep produced."""

    name: str = Field(description="Model name the best trial is registered under.")
    model: str = Field(description="The registered best version, NAME:vN.")
    metric: str
    mode: Literal["min", "max"]
    best: TrialResult
    trials: list[TrialResult]
    run_id: str = Field(description="Id of the sweep run (one metric point per trial).")


def _bad_config(where: str, exc: ValidationError) -> BadInputError:
    problems = "; ".join(
        f"{'.'.join(str(x) for x in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors()
    )
    return BadInputError(f"invalid {where}: {problems}")


def load_sweep_config(path: str | Path) -> SweepConfig:
    """A SweepConfig from YAML; its `config` path is made absolute relative to the file.

    A missing file, invalid YAML, unknown keys or invalid values raise BadInputError.
    """
    p = Path(path)
    data = read_yaml(p, "sweep config")
    if not isinstance(data, dict):
        raise BadInputError(f"sweep config {p} must be a mapping of field: value")
    try:
        cfg = SweepConfig.model_validate(data)
    except ValidationError as exc:
        raise _bad_config(f"sweep config {p}", exc) from exc
    if cfg.config is not None and not Path(cfg.config).is_absolute():
        cfg = cfg.model_copy(update={"config": str((p.parent / cfg.config).resolve())})
    return cfg


def sweep_yaml(cfg: SweepConfig, file: str = "sweep.yaml") -> str:
    """`cfg` as a sweep YAML file, beginning with the command that runs it."""
    body = yaml.safe_dump(
        cfg.model_dump(mode="json", exclude_none=True), allow_unicode=True, sort_keys=False
    )
    return SWEEP_HEADER.format(file=file) + body


def plan_params(cfg: SweepConfig) -> list[dict[str, Any]]:
    """The searched values of every trial, in run order.

    Grid: the cartesian product of the value lists (the last field varies fastest). Random:
    `trials` draws from `random.Random(seed)`, fields drawn in the order they are listed, so
    the plan is the same every time for the same config.
    """
    if cfg.grid is not None:
        fields = list(cfg.grid)
        return [
            dict(zip(fields, combo, strict=True))
            for combo in itertools.product(*(cfg.grid[f] for f in fields))
        ]
    rng = random.Random(cfg.seed)
    space = cfg.random or {}
    plans = []
    for _ in range(cfg.trials or 0):
        plans.append(
            {
                f: spec.draw(rng) if isinstance(spec, RangeSpec) else rng.choice(spec)
                for f, spec in space.items()
            }
        )
    return plans


def _fmt_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _trial_config(cfg: SweepConfig, params: dict[str, Any], index: int) -> TrainConfig:
    where = f"trial {index} ({_fmt_params(params)})"
    try:
        tcfg = load_train_config(cfg.config, {**cfg.train, **params})
        # load_train_config skips None overrides (unset CLI flags); a swept null is a value.
        nulls = {k: None for k, v in params.items() if v is None}
        if nulls:
            tcfg = TrainConfig.model_validate({**tcfg.model_dump(), **nulls})
    except BadInputError as exc:
        raise BadInputError(f"{where}: {exc.message}") from None
    except ValidationError as exc:
        raise _bad_config(f"{where} train config", exc) from None
    return tcfg


def _needs_validation(metric: str) -> bool:
    return metric.startswith("eval_")


def plan_trials(
    store: Store, cfg: SweepConfig
) -> tuple[str, list[tuple[dict[str, Any], TrainConfig]]]:
    """(model name, [(params, TrainConfig)]) of every trial, all validated; nothing trains.

    BadInputError names: searched fields TrainConfig does not have (or that a sweep sets
    itself: name, resume), the trial whose values are invalid, an `eval_*` metric with
    trials that hold out no validation data, trials that would register under different
    names, and datasets that do not exist.
    """
    known = set(TrainConfig.model_fields)
    unknown = [f for f in cfg.space if f not in known]
    if unknown:
        raise BadInputError(
            f"unknown TrainConfig field(s) in the sweep: {', '.join(unknown)}; known fields: "
            f"{', '.join(sorted(known))}"
        )
    reserved = [f for f in _RESERVED if f in cfg.space]
    if reserved:
        raise BadInputError(
            f"a sweep cannot search or set {', '.join(reserved)}: the model name comes from the "
            "train config and every trial trains from scratch"
        )
    trials = [
        (params, _trial_config(cfg, params, i)) for i, params in enumerate(plan_params(cfg), 1)
    ]
    names = sorted({t.model_name for _, t in trials})
    if len(names) > 1:
        raise BadInputError(
            f"the trials would register under different names ({', '.join(names)}); set `name` "
            "in the sweep's train settings"
        )
    name = names[0]
    check_name(name + TRIAL_SUFFIX)
    if any(t.resume for _, t in trials):
        raise BadInputError("a sweep cannot resume runs; remove resume from the train config")
    if _needs_validation(cfg.metric):
        blind = [
            i for i, (_, t) in enumerate(trials, 1) if not t.validation_dataset and t.val_ratio == 0
        ]
        if blind:
            raise BadInputError(
                f"metric {cfg.metric} needs validation data but trial(s) "
                f"{', '.join(map(str, blind))} have val_ratio 0 and no validation_dataset; set "
                "val_ratio > 0 or a validation_dataset, or rank by another metric (train_loss)"
            )
    for ref in sorted({r for _, t in trials for r in (t.dataset, t.validation_dataset) if r}):
        resolve_dataset(store, ref)
    return name, [
        (params, t.model_copy(update={"name": name + TRIAL_SUFFIX})) for params, t in trials
    ]


def _trial_progress(progress: Progress, index: int) -> Progress:
    """The trial's own progress tasks, so each trial gets its own bar."""

    def report(
        *,
        task: str,
        total: int | None = None,
        advance: int = 0,
        message: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        progress(
            task=f"trial {index} {task}",
            total=total,
            advance=advance,
            message=message,
            metrics=metrics,
        )

    return report


def _metric_value(info: ArtifactInfo, metric: str) -> float:
    metrics = info.meta.get("metrics") or {}
    value = metrics.get(metric)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        have = sorted(
            k for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
        )
        raise BadInputError(
            f"{info.ref} reports no usable {metric} (got {value!r}); its metrics: {', '.join(have)}"
        )
    return float(value)


def _new_run(runs: Runs, name: str, before: set[str]) -> Any:
    fresh = [r for r in runs.list(kind=RUN_KIND, name=name) if r.id not in before]
    return fresh[-1] if fresh else None


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not allowed: copy the bytes
        shutil.copy2(src, dst)


def _copy_payload(src: Path, dst: Path) -> None:
    for item in src.iterdir():
        if item.name == MANIFEST:
            continue
        if item.is_dir():
            shutil.copytree(item, dst / item.name, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(item), str(dst / item.name))


def _register_best(
    store: Store,
    name: str,
    cfg: SweepConfig,
    best: TrialResult,
    trials: list[TrialResult],
    run_id: str,
) -> ArtifactInfo:
    assert best.model is not None
    trial = store.resolve(best.model, "model")
    parents: list[tuple[ArtifactInfo, str]] = [
        (store.resolve(p.ref, p.kind), p.role) for p in trial.parents
    ]
    parents.append((trial, "trial"))
    meta = {
        **trial.meta,
        "sweep": {
            "metric": cfg.metric,
            "mode": cfg.mode,
            "value": best.metric,
            "params": best.params,
            "trial": trial.ref,
            "trials": len(trials),
            "run_id": run_id,
        },
    }
    with store.create("model", name, parents=parents, meta=meta) as draft:
        _copy_payload(trial.path, draft.path)
        (draft.path / "sweep.yaml").write_text(sweep_yaml(cfg), encoding="utf-8")
        (draft.path / "sweep.json").write_text(
            json.dumps([t.model_dump(mode="json") for t in trials], ensure_ascii=False, indent=2),
            encoding="utf-8",
        )
    assert draft.artifact is not None
    return draft.artifact


def _pick_best(trials: list[TrialResult], mode: str) -> TrialResult | None:
    done = [t for t in trials if t.status == "succeeded" and t.metric is not None]
    if not done:
        return None
    sign = 1.0 if mode == "min" else -1.0
    return min(done, key=lambda t: (sign * (t.metric or 0.0), t.index))


def _run_trials(
    store: Store,
    runs: Runs,
    cfg: SweepConfig,
    plan: list[tuple[dict[str, Any], TrainConfig]],
    sweep_run: str,
    progress: Progress,
) -> Iterator[tuple[TrialResult, bool]]:
    """Run the trials in order, yielding each result and whether its failure was bad input."""
    for index, (params, tcfg) in enumerate(plan, 1):
        trial_name = tcfg.model_name
        before = {r.id for r in runs.list(kind=RUN_KIND, name=trial_name)}
        result = TrialResult(index=index, params=params, status="failed")
        bad_input = False
        try:
            res = run_train(store, tcfg, _trial_progress(progress, index))
            result.model, result.run_id = res.model, res.run_id
            result.metric = _metric_value(store.resolve(res.model, "model"), cfg.metric)
            result.status = "succeeded"
            runs.log(sweep_run, index, {cfg.metric: result.metric})
        except LuodiError as exc:
            run = _new_run(runs, trial_name, before) if result.run_id is None else None
            if run is not None:
                result.run_id = run.id
                if run.status == "interrupted":  # Ctrl-C stops the sweep, not just the trial
                    raise KeyboardInterrupt from exc
            result.error = exc.message
            bad_input = isinstance(exc, BadInputError)
        progress(
            task="sweep",
            advance=1,
            message=f"trial {index} {result.status}",
            metrics={cfg.metric: result.metric} if result.metric is not None else None,
        )
        yield result, bad_input


def run_sweep(store: Store, cfg: SweepConfig, progress: Progress = no_progress) -> SweepResult:
    """Run every planned trial and register the best as the next version of the model name.

    See the module docstring for the registration contract. Raises BadInputError before any
    training when a trial's config is invalid (see `plan_trials`); BadInputError or
    StageFailedError (listing each trial's error) when every trial failed; StageFailedError
    when interrupted (finished trials stay registered as `<name>-trial` versions).
    """
    name, plan = plan_trials(store, cfg)
    runs = Runs(store)
    sweep_run = runs.start(SWEEP_KIND, name, cfg.model_dump(mode="json"))
    progress(task="sweep", total=len(plan))
    trials: list[TrialResult] = []
    bad_input: list[bool] = []
    try:
        for trial, was_bad in _run_trials(store, runs, cfg, plan, sweep_run, progress):
            bad_input.append(was_bad)
            trials.append(trial)
    except KeyboardInterrupt:
        runs.finish(sweep_run, "interrupted", error=f"interrupted after {len(trials)} trial(s)")
        raise StageFailedError(
            f"sweep interrupted after {len(trials)} of {len(plan)} trial(s); nothing registered "
            f"under {name!r} (finished trials are versions of {name + TRIAL_SUFFIX!r})"
        ) from None
    except BaseException as exc:
        runs.finish(sweep_run, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    best = _pick_best(trials, cfg.mode)
    if best is None:
        errors = "; ".join(f"trial {t.index} ({_fmt_params(t.params)}): {t.error}" for t in trials)
        runs.finish(sweep_run, "failed", error=f"every trial failed: {errors}")
        error_cls = BadInputError if all(bad_input) else StageFailedError
        raise error_cls(f"every trial of the sweep failed, nothing registered: {errors}")
    try:
        info = _register_best(store, name, cfg, best, trials, sweep_run)
    except BaseException as exc:
        runs.finish(sweep_run, "failed", error=f"registering the best trial failed: {exc}")
        raise
    runs.finish(sweep_run, "succeeded", artifact=info)
    return SweepResult(
        name=name,
        model=info.ref,
        metric=cfg.metric,
        mode=cfg.mode,
        best=best,
        trials=trials,
        run_id=sweep_run,
    )


__all__ = [
    "RangeSpec",
    "SweepConfig",
    "SweepResult",
    "TrialResult",
    "load_sweep_config",
    "plan_params",
    "plan_trials",
    "run_sweep",
    "sweep_yaml",
]
