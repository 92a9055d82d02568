"""run_train: validate everything, train with the HF Trainer, register the model version.

Order of work: everything a user can get wrong (stage, compute type, method, dataset kind and
emptiness, base model, cutoff, target modules) is checked before a run is recorded or a step
taken. Then the run is recorded, the Trainer saves checkpoints under
`<home>/runs/<dir>/checkpoints`, and only a run that completes registers a model version
(atomically, with its base and datasets as lineage parents). A crash or Ctrl-C marks the run
failed or interrupted, registers nothing and keeps the checkpoints for `resume`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, Field
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_utils import get_last_checkpoint

from luodi.data.datasets import resolve as resolve_dataset
from luodi.errors import BadInputError, LuodiError, MissingDependencyError, StageFailedError
from luodi.models.base import resolve_base
from luodi.progress import Progress, no_progress, quiet_hf_bars
from luodi.store import ArtifactInfo, Store
from luodi.store.runs import Runs
from luodi.train.callbacks import EarlyStopping, InterruptCallback, MetricsCallback
from luodi.train.compute import precision_args
from luodi.train.config import TrainConfig
from luodi.train.data import ExampleDataset, PadCollator, RecordSplit, check_kind, select_records
from luodi.train.distributed import (
    RUN_DIR_ENV,
    NullRuns,
    ddp_args,
    in_launch,
    is_main,
    launch_torchrun,
    world_size,
)
from luodi.train.modelprep import drop_gguf_marker, load_model, reinitialise, set_dropout
from luodi.train.peft import METHODS, apply_method, check_method
from luodi.train.stages import (
    Example,
    Stage,
    StageSetup,
    TrainerContext,
    custom_trainer,
    get_stage,
    has_custom_trainer,
    stage_setup,
)
from luodi.train.versions import KIND, write_version_files

RUN_KIND = "train"
DEFAULT_INTERVAL = 100
_OPTIM = {"adamw": "adamw_torch", "sgd": "sgd", "adafactor": "adafactor"}
# Config fields a resumed run must share with the run it continues.
_RESUME_KEYS = (
    "stage",
    "method",
    "base_ref",
    "dataset_ref",
    "cutoff_len",
    "tiny_vocab_size",
    "teacher",
)
# Evaluation outputs that describe the run's speed, not the model.
_EVAL_NOISE = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "epoch")


class TrainResult(BaseModel):
    """What a finished training run produced."""

    model: str = Field(description="The registered model version, NAME:vN.")
    run_id: str = Field(description="Id of the run (metrics: `luodi train show RUN`).")
    stage: str
    method: str
    steps: int = Field(description="Optimizer steps taken (in total, when resumed).")
    train_loss: float | None = Field(description="Last logged training loss.")
    eval_loss: float | None = Field(description="Validation loss at the end (None: no validation).")
    eval_metrics: dict[str, float] = Field(
        default_factory=dict,
        description="Every validation metric at the end (e.g. eval_accuracy for classify).",
    )
    tokens_per_s: float | None = Field(description="Training throughput over this run's steps.")
    train_examples: int
    validation_examples: int
    trainable_parameters: int
    total_parameters: int
    path: str = Field(description="The version's folder.")
    checkpoint_dir: str
    resumed_from: str | None = None


@dataclass
class _Prepared:
    """Everything checked and built before the run is recorded."""

    stage: Stage
    base_info: ArtifactInfo
    train_info: ArtifactInfo
    val_info: ArtifactInfo | None
    records: RecordSplit
    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    train: list[Example]
    validation: list[Example]
    base_weights: PreTrainedModel | None
    precision: dict[str, Any]
    setup: StageSetup


_INTEGRATIONS = {"mlflow": "mlflow", "tensorboard": "tensorboard", "wandb": "wandb"}


def _check_integrations(cfg: TrainConfig) -> None:
    """report_to targets and DeepSpeed must be installed before a run starts."""
    for target in cfg.report_to:
        module = _INTEGRATIONS.get(target)
        if module is None:
            known = ", ".join(sorted(_INTEGRATIONS))
            raise BadInputError(f"report_to {target!r} is not supported; use one of: {known}")
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(
                f"report_to {target} needs it installed: pip install {module}"
            )
    if cfg.deepspeed is not None:
        if not cfg.deepspeed.is_file():
            raise BadInputError(f"deepspeed config {cfg.deepspeed} does not exist")
        if importlib.util.find_spec("deepspeed") is None:
            raise MissingDependencyError("deepspeed is not installed: pip install deepspeed (GPU)")


def prepare(store: Store, cfg: TrainConfig) -> _Prepared:
    """Check every input and build the model and examples; nothing is recorded yet.

    Raises BadInputError (or MissingDependencyError) naming the problem.
    """
    stage = get_stage(cfg.stage)
    _check_integrations(cfg)
    precision = precision_args(cfg.compute)
    method = METHODS.get(cfg.method)
    method.requires()
    train_info = resolve_dataset(store, cfg.dataset)
    check_kind(train_info, stage.record_kinds, stage.name)
    val_info = None
    if cfg.validation_dataset:
        val_info = resolve_dataset(store, cfg.validation_dataset)
        check_kind(val_info, stage.record_kinds, stage.name)
    records = select_records(cfg, train_info, val_info)
    setup = stage_setup(stage, store, cfg, records)
    base_info = resolve_base(store, cfg.base)
    is_tiny = base_info.meta.get("format") == "tiny"
    model, tokenizer = load_model(
        cfg, stage, setup, base_info, records, train_info.meta["record_kind"]
    )
    if base_info.meta.get("format") == "gguf":
        drop_gguf_marker(model)
    if stage.from_scratch and not is_tiny:
        model = reinitialise(model, cfg.seed)
    if cfg.dropout is not None:
        set_dropout(model, cfg.dropout)
    train = stage.build_dataset(records.train, tokenizer, cfg)
    validation = (
        stage.build_dataset(records.validation, tokenizer, cfg) if records.validation else []
    )
    check_method(cfg, model)
    # Adapters on weights the base artifact cannot rebuild need those weights kept beside them.
    base_weights = model if cfg.is_adapter and (is_tiny or stage.from_scratch) else None
    return _Prepared(
        stage=stage,
        base_info=base_info,
        train_info=train_info,
        val_info=val_info,
        records=records,
        model=model,
        tokenizer=tokenizer,
        train=train,
        validation=validation,
        base_weights=base_weights,
        precision=precision,
        setup=setup,
    )


def _run_config(cfg: TrainConfig, p: _Prepared) -> dict[str, Any]:
    return {
        **cfg.model_dump(mode="json"),
        "base_ref": p.base_info.ref,
        "dataset_ref": p.train_info.ref,
        "validation_ref": p.val_info.ref if p.val_info else None,
        "world_size": world_size(),
    }


def _find_resume(runs: Runs, cfg: TrainConfig, config: dict[str, Any]) -> tuple[str, str]:
    """(checkpoint dir, last checkpoint) of the newest unfinished run of this model name."""
    candidates = [
        r
        for r in runs.list(kind=RUN_KIND, name=cfg.model_name)
        if r.status in ("failed", "interrupted") and r.checkpoint_dir
    ]
    for run in reversed(candidates):
        last = (
            get_last_checkpoint(run.checkpoint_dir) if Path(run.checkpoint_dir).is_dir() else None
        )
        if last is None:
            continue
        diff = [k for k in _RESUME_KEYS if run.config.get(k) != config.get(k)]
        if diff:
            raise BadInputError(
                f"cannot resume run {run.short_id} of {cfg.model_name!r}: it was started with a "
                f"different {', '.join(diff)}; train without resume or with the same settings"
            )
        return str(run.checkpoint_dir), last
    raise BadInputError(
        f"nothing to resume for {cfg.model_name!r}: no failed or interrupted run with a "
        "checkpoint; train without resume"
    )


def _training_args(
    cfg: TrainConfig, out_dir: str, precision: dict[str, Any], has_eval: bool
) -> dict[str, Any]:
    """TrainingArguments keyword arguments (TRL's config classes take the same ones)."""
    # Fixed step intervals by default: "every epoch" means every step on a small dataset.
    eval_strategy = "steps" if has_eval else "no"
    return dict(
        output_dir=out_dir,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a share of the steps
        optim=_OPTIM[cfg.optimizer],
        weight_decay=cfg.weight_decay,
        gradient_accumulation_steps=cfg.grad_accum,
        max_grad_norm=cfg.max_grad_norm,
        logging_strategy="steps",
        logging_steps=cfg.logging_steps,
        eval_strategy=eval_strategy,
        eval_steps=cfg.eval_steps or DEFAULT_INTERVAL,
        eval_on_start=has_eval,
        save_strategy="steps",
        save_steps=cfg.save_steps or DEFAULT_INTERVAL,
        save_total_limit=2,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to=cfg.report_to or "none",
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        log_level="warning",
        fsdp=cfg.fsdp or "",
        deepspeed=str(cfg.deepspeed) if cfg.deepspeed else None,
        **ddp_args(),
        **precision,
    )


def _count(model: torch.nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def run_train(
    store: Store,
    cfg: TrainConfig,
    progress: Progress = no_progress,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainResult | None:
    """Train per `cfg` and register the result as the next version of model `cfg.model_name`.

    Every input is validated before training (BadInputError / MissingDependencyError, nothing
    recorded). A failure during training marks the run "failed" (StageFailedError), a Ctrl-C
    "interrupted"; both register nothing and keep the checkpoints, which `resume=True`
    continues from. Per-step metrics (loss, lr, grad_norm, tokens_per_s, eval_loss, eval_ppl)
    are stored with the run. `callbacks` are extra HF TrainerCallbacks (after luodi's own).
    With `launcher: torchrun` the run happens in `nproc` worker processes (validated here
    first); inside a launch only rank 0 records and registers, other ranks return None.
    """
    p = prepare(store, cfg)
    if cfg.launcher == "torchrun" and not in_launch():
        return launch_torchrun(store, cfg, p.base_info)
    main = is_main()
    runs: Runs | NullRuns = Runs(store) if main else NullRuns()
    progress = progress if main else no_progress
    config = _run_config(cfg, p)
    resume_from: str | None = None
    if cfg.resume:
        ckpt_dir, resume_from = _find_resume(runs, cfg, config)  # type: ignore[arg-type]
    elif in_launch():
        ckpt_dir = str(Path(os.environ[RUN_DIR_ENV]) / "checkpoints")
    else:
        home = store.settings.home.resolve()
        ckpt_dir = str(home / "runs" / uuid.uuid4().hex / "checkpoints")
    Path(ckpt_dir).mkdir(parents=True, exist_ok=True)
    base_dir = Path(ckpt_dir).parent / "base"
    if main and p.base_weights is not None and not base_dir.is_dir():
        with quiet_hf_bars():
            p.base_weights.save_pretrained(base_dir)  # before the adapter is injected into it

    model = apply_method(cfg, p.model, p.stage.task)
    method = METHODS.get(cfg.method)
    optimizer = method.optimizer(cfg, model) if method.optimizer else None
    trainable, total = _count(model)
    args = _training_args(cfg, ckpt_dir, p.precision, bool(p.validation))
    run_id = runs.start(RUN_KIND, cfg.model_name, config, checkpoint_dir=ckpt_dir)
    metrics_cb = MetricsCallback(runs, run_id, progress)
    interrupt = InterruptCallback()
    all_callbacks: list[TrainerCallback] = [metrics_cb, interrupt]
    early = EarlyStopping(cfg.early_stopping_patience) if cfg.early_stopping_patience else None
    if early is not None and p.validation:
        all_callbacks.append(early)
    all_callbacks.extend(callbacks)
    ctx = TrainerContext(
        cfg=cfg,
        model=model,
        tokenizer=p.tokenizer,
        train=p.train,
        validation=p.validation,
        args=args,
        callbacks=all_callbacks,
        optimizer=optimizer,
        setup=p.setup,
    )
    trainer: Trainer | None = None
    started = time.monotonic()
    try:
        with quiet_hf_bars():
            trainer = _make_trainer(p.stage, ctx)
        with interrupt.installed(), quiet_hf_bars():
            out = trainer.train(resume_from_checkpoint=resume_from)
        if interrupt.requested:
            raise KeyboardInterrupt
        eval_metrics: dict[str, float] = {}
        if p.validation:
            with quiet_hf_bars():
                eval_metrics = _eval_metrics(trainer.evaluate())
        eval_loss = eval_metrics.get("eval_loss")
        metrics_cb.flush()
    except KeyboardInterrupt:
        _close(metrics_cb)
        step = trainer.state.global_step if trainer is not None else 0
        runs.finish(run_id, "interrupted", error=f"interrupted at step {step}")
        raise StageFailedError(
            f"training interrupted at step {step}; nothing registered, checkpoints kept in "
            f"{ckpt_dir}: rerun with resume to continue"
        ) from None
    except Exception as exc:
        _close(metrics_cb)
        step = trainer.state.global_step if trainer is not None else 0
        reason = exc.message if isinstance(exc, LuodiError) else f"{type(exc).__name__}: {exc}"
        runs.finish(run_id, "failed", error=f"step {step}: {reason}")
        if isinstance(exc, LuodiError):
            raise
        raise StageFailedError(
            f"training failed at step {step} ({reason}); nothing registered, checkpoints kept "
            f"in {ckpt_dir}: fix the cause and rerun with resume to continue"
        ) from exc

    if not main:
        return None  # rank 0 registers the version
    seconds = time.monotonic() - started
    tokens = trainer.state.num_input_tokens_seen
    tokens_per_s = tokens / seconds if seconds > 0 and not resume_from else None
    train_loss = metrics_cb.last.get("loss")
    # Perplexity only means something for a plain language-modelling loss.
    lm_loss = eval_loss is not None and not has_custom_trainer(p.stage)
    final = {
        **eval_metrics,
        "steps": trainer.state.global_step,
        "train_loss": train_loss,
        "train_loss_mean": float(out.training_loss),
        "eval_loss": eval_loss,
        "eval_ppl": math.exp(min(eval_loss, 50.0)) if lm_loss and eval_loss is not None else None,
        "tokens_per_s": tokens_per_s,
        "train_tokens": tokens,
        "seconds": seconds,
        "early_stopped_at": early.stopped_at if early else None,
    }
    try:
        with quiet_hf_bars():
            info = _register(
                store, cfg, p, trainer.model, config, final, metrics_cb, run_id, base_dir
            )
    except BaseException as exc:
        runs.finish(run_id, "failed", error=f"registering the model failed: {exc}")
        raise
    runs.finish(run_id, "succeeded", artifact=info)
    return TrainResult(
        model=info.ref,
        run_id=run_id,
        stage=cfg.stage,
        method=cfg.method,
        steps=trainer.state.global_step,
        train_loss=train_loss,
        eval_loss=eval_loss,
        eval_metrics=eval_metrics,
        tokens_per_s=tokens_per_s,
        train_examples=len(p.train),
        validation_examples=len(p.validation),
        trainable_parameters=trainable,
        total_parameters=total,
        path=str(info.path),
        checkpoint_dir=ckpt_dir,
        resumed_from=resume_from,
    )


def _make_trainer(stage: Stage, ctx: TrainerContext) -> Trainer:
    """The stage's own trainer, or the HF Trainer over padded input_ids/labels rows."""
    trainer = custom_trainer(stage, ctx)
    if trainer is None:
        trainer = Trainer(
            model=ctx.model,
            args=TrainingArguments(**ctx.args),
            data_collator=PadCollator(ctx.tokenizer.pad_token_id),
            train_dataset=ExampleDataset(ctx.train),
            eval_dataset=ExampleDataset(ctx.validation) if ctx.validation else None,
            processing_class=ctx.tokenizer,
            callbacks=ctx.callbacks,
            optimizers=(ctx.optimizer, None),
        )
    for noisy in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(noisy)
    return trainer


def _eval_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric validation metrics that describe the model (not the evaluation's speed)."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if k not in _EVAL_NOISE and isinstance(v, int | float) and not isinstance(v, bool)
    }


def _close(metrics_cb: MetricsCallback) -> None:
    with contextlib.suppress(Exception):  # keep the original error, not a logging one
        metrics_cb.flush()


def _register(
    store: Store,
    cfg: TrainConfig,
    p: _Prepared,
    model: torch.nn.Module,
    config: dict[str, Any],
    final: dict[str, Any],
    metrics_cb: MetricsCallback,
    run_id: str,
    base_dir: Path,
) -> ArtifactInfo:
    """Register the trained model atomically with its base and datasets as parents."""
    parents: list[tuple[ArtifactInfo, str]] = [(p.base_info, "base"), (p.train_info, "train")]
    if p.val_info is not None:
        parents.append((p.val_info, "validation"))
    parents.extend(p.setup.parents)
    # An artifact is a parent once (the store keys lineage by child and parent): validating on
    # the training dataset, or distilling from the base itself, keeps the first role.
    unique: dict[tuple[str, str, int], tuple[ArtifactInfo, str]] = {}
    for artifact, role in parents:
        unique.setdefault((artifact.kind, artifact.name, artifact.version), (artifact, role))
    parents = list(unique.values())
    meta = {
        **p.setup.meta,
        "stage": cfg.stage,
        "method": cfg.method,
        "task": p.stage.task,
        "adapter": cfg.is_adapter,
        "base": {
            "ref": p.base_info.ref,
            "sha256": p.base_info.meta.get("sha256") or p.base_info.content_hash,
            "source": p.base_info.meta.get("source"),
            "saved": p.base_weights is not None,
        },
        "data": {
            **p.records.source,
            "train_records": len(p.records.train),
            "validation_records": len(p.records.validation),
            "train_examples": len(p.train),
            "validation_examples": len(p.validation),
        },
        "metrics": final,
        "config": config,
        "run_id": run_id,
    }
    model.eval()
    with store.create(KIND, cfg.model_name, parents=parents, meta=meta) as draft:
        write_version_files(
            draft.path,
            model=model,  # type: ignore[arg-type]
            tokenizer=p.tokenizer,
            adapter=cfg.is_adapter,
            config=cfg.model_dump(mode="json"),
            stage=cfg.stage,
            metrics={"final": final, "history": metrics_cb.history},
            base_weights=base_dir if p.base_weights is not None else None,
        )
    assert draft.artifact is not None
    return draft.artifact


__all__ = ["TrainResult", "prepare", "run_train"]
