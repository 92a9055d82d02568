"""The pipeline's model-side stage kinds: train, eval, gate, register, deploy (see `stages`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from luodi.errors import BadInputError
from luodi.eval.gate import GateRules
from luodi.pipeline.base import (
    StageContext,
    StageOutput,
    StageRejected,
    file_input,
    model_like,
    stage_kind,
)
from luodi.serve.deployments import DeploymentSpec
from luodi.store import Store
from luodi.train.config import TrainConfig


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


# -- train -----------------------------------------------------------------------------------
def _train_inputs(ctx: StageContext, cfg: TrainConfig) -> dict[str, str]:
    from luodi.data.datasets import resolve

    out = ctx.artifact(resolve(ctx.store, cfg.dataset), "dataset")
    if cfg.validation_dataset:
        out |= ctx.artifact(resolve(ctx.store, cfg.validation_dataset), "validation")
    out |= ctx.artifact(model_like(ctx.store, cfg.base), "base")
    if cfg.teacher:
        out |= ctx.artifact(model_like(ctx.store, cfg.teacher), "teacher")
    return out | file_input(cfg.deepspeed, "deepspeed")


@stage_kind(
    "train",
    "Train a model version: sft, pretrain, cpt, dpo, reward, classify, distill (luodi train).",
    TrainConfig,
    inputs=_train_inputs,
    output_kind="model",
)
def _train(ctx: StageContext, cfg: TrainConfig) -> StageOutput:
    from luodi.train.runner import run_train
    from luodi.train.versions import resolve_model

    res = run_train(ctx.store, cfg, ctx.progress)
    return StageOutput.of(
        resolve_model(ctx.store, res.model),
        run=res.run_id[:8],
        steps=res.steps,
        train_loss=res.train_loss,
        eval_loss=res.eval_loss,
    )


# -- eval ------------------------------------------------------------------------------------
class EvalStageConfig(BaseModel):
    """An eval run: a target scored on a suite (what `luodi eval run` takes)."""

    model_config = ConfigDict(extra="forbid")

    target: str = Field(
        description="NAME[:vN|@STAGE], a base model or path, or openai:http://HOST:PORT/v1#MODEL."
    )
    suite: Path | dict[str, Any] = Field(
        description="Suite YAML file, or the suite itself: {name, tasks: [...]}."
    )
    seed: int = Field(default=0, description="Seed for everything random.")
    batch_size: int = Field(default=16, ge=1, description="Forward-pass batch of a local model.")
    allow_partial: bool = Field(
        default=False,
        description="Accept a partial run (the target failed mid-run); by default it fails "
        "the stage, as `luodi eval run` exits 1.",
    )


def _suite(cfg: EvalStageConfig) -> Any:
    from luodi.eval.suite import load_suite, parse_suite

    if isinstance(cfg.suite, Path):
        return load_suite(cfg.suite)
    return parse_suite(cfg.suite, source="with.suite")


def _eval_inputs(ctx: StageContext, cfg: EvalStageConfig) -> dict[str, str]:
    from luodi.data.datasets import resolve

    store = ctx.store
    suite = _suite(cfg)
    out = {"suite": _digest(suite.to_yaml())}
    out |= ctx.artifact(model_like(store, cfg.target), "target")
    if cfg.target.startswith("openai:"):
        out["target"] = cfg.target
    for task in suite.tasks:
        if task.dataset:
            out |= ctx.artifact(resolve(store, task.dataset), f"{task.label} dataset")
        support = task.support_datasets(lambda r: list(resolve(store, r).meta.get("splits") or {}))
        for i, (ref, _split) in enumerate(support):
            out |= ctx.artifact(resolve(store, ref), f"{task.label} support {i}")
    return out


@stage_kind(
    "eval",
    "Score a target on an eval suite and store the run (luodi eval run).",
    EvalStageConfig,
    inputs=_eval_inputs,
    check=_suite,
    output_kind="eval_run",
)
def _eval(ctx: StageContext, cfg: EvalStageConfig) -> StageOutput:
    from luodi.eval import run_eval

    res = run_eval(
        ctx.store,
        cfg.target,
        _suite(cfg),
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        progress=ctx.progress,
    )
    metrics = {f"{t.name}.{k}": v for t in res.tasks for k, v in t.metrics.items()}
    partial = "partial" if res.status != "complete" else None
    out = StageOutput.of(ctx.store.resolve(res.run, "eval_run"), status=partial, **metrics)
    if res.status != "complete" and not cfg.allow_partial:
        errors = "; ".join(f"{t.name}: {t.error}" for t in res.tasks if t.error)
        raise StageRejected(f"eval run {res.run} is partial: {errors}", out)
    return out


# -- gate ------------------------------------------------------------------------------------
class GateStageConfig(BaseModel):
    """A release gate over an eval run (what `luodi eval gate` takes)."""

    model_config = ConfigDict(extra="forbid")

    candidate: str = Field(description="The candidate eval run, SUITE or SUITE:vN.")
    against: str | None = Field(
        default=None,
        description="Baseline eval run (SUITE:vN, a model ref) or 'production'. Default: none, "
        "only thresholds are checked (no_regression rules then need a baseline).",
    )
    rules: Path | GateRules = Field(
        description="Gate rules YAML file, or the rules themselves: {thresholds, no_regression}."
    )


def _rules(cfg: GateStageConfig) -> GateRules:
    from luodi.eval.gate import load_gate_rules

    return load_gate_rules(cfg.rules) if isinstance(cfg.rules, Path) else cfg.rules


def _check_gate(cfg: GateStageConfig) -> None:
    rules = _rules(cfg)
    if cfg.against is None and rules.no_regression:
        raise BadInputError(
            "with.against: no_regression rules need a baseline; give against: production "
            "(or an eval run), or use thresholds only"
        )


def _gate_thresholds(store: Store, cfg: GateStageConfig) -> Any:
    """`gate` with no baseline: thresholds only, the verdict stored like `gate` stores it but
    with the candidate as its one parent (a run cannot be its own baseline in the lineage)."""
    from luodi.eval.compare import resolve_eval_run
    from luodi.eval.gate import EVAL_GATE, gate, gate_rules_yaml

    rules = _rules(cfg)
    cand = resolve_eval_run(store, cfg.candidate)
    verdict = gate(store, cand.ref, cand.ref, rules, save=False)
    meta = verdict.model_dump(mode="json", exclude={"ref"})
    with store.create(EVAL_GATE, cand.name, parents=[(cand, "candidate")], meta=meta) as draft:
        (draft.path / "verdict.json").write_text(
            json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8"
        )
        (draft.path / "rules.yaml").write_text(gate_rules_yaml(rules), encoding="utf-8")
    assert draft.artifact is not None
    return verdict.model_copy(update={"ref": draft.artifact.ref})


def _baseline(store: Store, cfg: GateStageConfig) -> str:
    from luodi.eval.compare import resolve_eval_run
    from luodi.eval.runner import production_run

    if cfg.against is None:
        return resolve_eval_run(store, cfg.candidate).ref
    if cfg.against == "production":
        return production_run(store, cfg.candidate).ref
    return cfg.against


def _gate_inputs(ctx: StageContext, cfg: GateStageConfig) -> dict[str, str]:
    from luodi.eval.compare import resolve_eval_run

    cand = resolve_eval_run(ctx.store, cfg.candidate)
    base = resolve_eval_run(ctx.store, _baseline(ctx.store, cfg), like=cand)
    return {
        **ctx.artifact(cand, "candidate"),
        **ctx.artifact(base, "baseline"),
        "rules": _digest(_rules(cfg).model_dump(mode="json")),
    }


@stage_kind(
    "gate",
    "Check an eval run against thresholds and a baseline; fails unless it passes "
    "(luodi eval gate).",
    GateStageConfig,
    inputs=_gate_inputs,
    check=_check_gate,
    output_kind="eval_gate",
)
def _gate(ctx: StageContext, cfg: GateStageConfig) -> StageOutput:
    from luodi.eval.gate import EVAL_GATE, gate

    if cfg.against is None:
        verdict = _gate_thresholds(ctx.store, cfg)
    else:
        verdict = gate(ctx.store, cfg.candidate, _baseline(ctx.store, cfg), _rules(cfg))
    assert verdict.ref is not None
    failed = [c for c in verdict.checks if not c.passed]
    out = StageOutput.of(
        ctx.store.resolve(verdict.ref, EVAL_GATE),
        passed=verdict.passed,
        candidate=verdict.candidate,
        against=verdict.against,
        failed=[c.name for c in failed],
    )
    if not verdict.passed:
        shown = "; ".join(f"{c.name}: {c.detail}" for c in failed)
        raise StageRejected(f"gate {verdict.ref} FAILED: {shown}", out)
    return out


# -- register --------------------------------------------------------------------------------
class RegisterConfig(BaseModel):
    """Put a model version into a registry stage (what `luodi models promote` does)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Model version: NAME, NAME:vN or NAME@STAGE.")
    stage: Literal["candidate", "staging", "production", "archived"] = Field(
        default="staging",
        description="Stage to move it to; production archives the current production version.",
    )
    reason: str | None = Field(default=None, description="Why, for the stage history.")


def _register_inputs(ctx: StageContext, cfg: RegisterConfig) -> dict[str, str]:
    from luodi.train.versions import resolve_model

    return ctx.artifact(resolve_model(ctx.store, cfg.model), "model")


def _still_in_stage(store: Store, out: StageOutput, cfg: RegisterConfig) -> bool:
    from luodi.registry.stages import stage_of

    return stage_of(store, out.ref) == cfg.stage


@stage_kind(
    "register",
    "Move a model version to a registry stage: staging, production, ... (luodi models promote).",
    RegisterConfig,
    inputs=_register_inputs,
    valid=_still_in_stage,
    output_kind="model",
)
def _register(ctx: StageContext, cfg: RegisterConfig) -> StageOutput:
    from luodi.registry.stages import set_stage
    from luodi.train.versions import resolve_model

    reason = cfg.reason or "pipeline"
    change = set_stage(ctx.store, cfg.model, cfg.stage, reason)
    return StageOutput.of(
        resolve_model(ctx.store, change.ref),
        stage=change.to_stage,
        previous_stage=change.from_stage,
        displaced=change.displaced,
    )


# -- deploy ----------------------------------------------------------------------------------
def _guard_path(ctx: StageContext, spec: DeploymentSpec) -> DeploymentSpec:
    """The spec with a relative guard policy path made relative to the pipeline's folder."""
    g = spec.guard
    if g and g != "default" and not Path(g).is_absolute() and (ctx.base_dir / g).is_file():
        return spec.model_copy(update={"guard": str((ctx.base_dir / g).resolve())})
    return spec


def _deploy_inputs(ctx: StageContext, cfg: DeploymentSpec) -> dict[str, str]:
    from luodi.rag.kb_build import resolve_kb

    spec = _guard_path(ctx, cfg)
    out: dict[str, str] = {}
    for i, r in enumerate(spec.routes):
        out |= ctx.artifact(model_like(ctx.store, r.model), f"route {i}")
    for kb in spec.knowledge_bases:
        out |= ctx.artifact(resolve_kb(ctx.store, kb), f"kb {kb}")
    if spec.guard and spec.guard != "default":
        out |= file_input(Path(spec.guard), "guard")
    return out


def _still_current(store: Store, out: StageOutput, cfg: DeploymentSpec) -> bool:
    from luodi.serve import deployments as D

    return D.current(store, cfg.name).ref == out.ref


@stage_kind(
    "deploy",
    "Apply a deployment: routes with traffic weights (a canary), knowledge bases, guard "
    "(luodi deploy apply).",
    DeploymentSpec,
    inputs=_deploy_inputs,
    valid=_still_current,
    output_kind="deployment",
)
def _deploy(ctx: StageContext, cfg: DeploymentSpec) -> StageOutput:
    from luodi.serve import deployments as D

    info = D.apply(ctx.store, _guard_path(ctx, cfg))
    total = sum(r.weight for r in info.spec.routes) or 1.0
    routes = {r.served or r.model: round(100 * r.weight / total, 1) for r in info.spec.routes}
    return StageOutput.of(ctx.store.resolve(info.ref, D.KIND), routes=routes, changed=info.changed)
