"""TrainConfig: every knob of a training run, typed, described, unknown keys rejected."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from luodi.errors import BadInputError
from luodi.yamlio import read_yaml


class TrainConfig(BaseModel):
    """One training run: what to train (stage, base, data), how (method, optimizer), and where."""

    model_config = ConfigDict(extra="forbid")

    stage: Literal["sft", "pretrain", "cpt", "dpo", "reward", "classify", "distill"] = Field(
        description=(
            "Training stage: sft (qa datasets, loss on assistant tokens), pretrain (text "
            "datasets, weights initialised from scratch with the base's architecture), cpt "
            "(continued pretraining of the base's weights on text datasets), dpo (preference "
            "datasets, direct preference optimisation), reward (preference datasets, a scalar "
            "reward model), classify (labeled datasets, a sequence-classification head), "
            "distill (text or qa datasets, the student learns the teacher's output distribution)."
        )
    )
    base: str = Field(
        default="default",
        description=(
            "Base model: 'default' (SmolLM2-135M-Instruct), 'tiny:<preset>' (built from scratch), "
            "a registered base name[:vN], or a path to an HF model folder or a GGUF file."
        ),
    )
    dataset: str = Field(description="Training dataset version, NAME or NAME:vN.")
    validation_dataset: str | None = Field(
        default=None,
        description=(
            "Validation dataset version. Default: the training dataset's 'validation' split, or "
            "else a val_ratio share of its training records."
        ),
    )
    val_ratio: float = Field(
        default=0.1,
        ge=0.0,
        lt=1.0,
        description=(
            "Share of training records held out for validation (deterministic by seed) when "
            "there is no validation dataset or split (ignored when there is); 0 disables "
            "validation."
        ),
    )
    name: str | None = Field(
        default=None,
        description="Name of the model version to register. Default: '<dataset name>-<stage>'.",
    )
    method: Literal["full", "lora", "lora_plus", "dora", "prefix", "prompt", "ia3", "qlora"] = (
        Field(
            default="lora",
            description=(
                "What is trained: full (every weight) or a PEFT adapter: lora, lora_plus (LoRA "
                "with a larger learning rate for B), dora, prefix, prompt, ia3, qlora (4-bit "
                "base; needs CUDA and bitsandbytes)."
            ),
        )
    )
    lora_r: int = Field(default=8, ge=1, description="LoRA rank.")
    lora_alpha: float = Field(default=16.0, gt=0, description="LoRA scaling alpha.")
    lora_dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="LoRA dropout.")
    target_modules: Literal["all"] | list[str] = Field(
        default="all",
        description=(
            "Modules adapted by lora/dora/ia3: 'all' (every linear layer except the output head) "
            "or a list of module names such as [q_proj, v_proj]."
        ),
    )
    loraplus_lr_ratio: float = Field(
        default=16.0, ge=1.0, description="LoRA+: learning-rate ratio of the B matrices to A."
    )
    num_virtual_tokens: int = Field(
        default=16, ge=1, description="prefix/prompt tuning: number of virtual tokens."
    )
    optimizer: Literal["adamw", "sgd", "adafactor"] = Field(
        default="adamw", description="Optimizer."
    )
    learning_rate: float = Field(default=2e-4, gt=0, description="Peak learning rate.")
    scheduler: Literal["cosine", "linear", "constant"] = Field(
        default="cosine", description="Learning-rate schedule after warmup."
    )
    warmup_ratio: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Share of the steps spent warming up."
    )
    epochs: float = Field(default=1.0, gt=0, description="Passes over the training data.")
    max_steps: int | None = Field(
        default=None, ge=1, description="Optimizer steps to run; overrides epochs when set."
    )
    batch_size: int = Field(default=8, ge=1, description="Sequences per device per step.")
    grad_accum: int = Field(default=1, ge=1, description="Gradient accumulation steps.")
    cutoff_len: int = Field(
        default=512,
        ge=8,
        description=(
            "Maximum tokens per sequence: sft truncates longer conversations (a prompt longer "
            "than this is an error), pretrain packs text into blocks of this length."
        ),
    )
    max_samples: int | None = Field(
        default=None, ge=1, description="Use at most this many training records."
    )
    compute: Literal["fp32", "bf16", "fp16"] = Field(
        default="fp32",
        description=(
            "Compute type: fp32, bf16 (autocast; CPUs with AVX-512 bf16/AMX or Ampere+ GPUs), "
            "fp16 (GPU only)."
        ),
    )
    weight_decay: float = Field(default=0.0, ge=0.0, description="Weight decay.")
    dropout: float | None = Field(
        default=None,
        ge=0.0,
        lt=1.0,
        description="Attention dropout of the model during training. Default: the model's own.",
    )
    max_grad_norm: float = Field(
        default=1.0, ge=0.0, description="Gradient clipping norm (0 disables clipping)."
    )
    seed: int = Field(default=42, description="Random seed (data order, init, val split).")
    eval_steps: int | None = Field(
        default=None,
        ge=1,
        description="Evaluate every N steps, before the first and after the last. Default: 100.",
    )
    save_steps: int | None = Field(
        default=None,
        ge=1,
        description="Save a checkpoint every N steps (the last two are kept). Default: 100.",
    )
    logging_steps: int = Field(default=1, ge=1, description="Record metrics every N steps.")
    early_stopping_patience: int | None = Field(
        default=None,
        ge=1,
        description="Stop after this many evaluations without a lower validation loss.",
    )
    resume: bool = Field(
        default=False,
        description=(
            "Continue the last failed or interrupted run of this model name from its last "
            "checkpoint."
        ),
    )
    launcher: Literal["local", "torchrun"] = Field(
        default="local",
        description=(
            "local: this process. torchrun: `nproc` processes with DDP (gloo on CPU, NCCL on "
            "GPU); FSDP or DeepSpeed through the `fsdp` / `deepspeed` fields."
        ),
    )
    nproc: int = Field(default=1, ge=1, description="Processes per node with launcher torchrun.")
    fsdp: str | None = Field(
        default=None,
        description="FSDP options passed to the Trainer, e.g. 'full_shard auto_wrap' (GPU).",
    )
    deepspeed: Path | None = Field(
        default=None, description="DeepSpeed config JSON passed to the Trainer (needs deepspeed)."
    )
    report_to: list[str] = Field(
        default_factory=list,
        description="Extra trackers passed to the HF Trainer (mlflow, tensorboard) if installed.",
    )
    teacher: str | None = Field(
        default=None,
        description=(
            "distill: the teacher, a registered model version (NAME, NAME:vN, NAME@stage) or a "
            "base model reference; it must share the student's tokenizer (a tiny student is "
            "built on the teacher's)."
        ),
    )
    distill_temperature: float = Field(
        default=2.0,
        gt=0,
        description="distill: softmax temperature applied to teacher and student logits.",
    )
    distill_alpha: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description=(
            "distill: weight of the KL term (alpha * T^2 * KL(teacher || student)); the data's "
            "cross-entropy gets 1 - alpha."
        ),
    )
    dpo_beta: float = Field(
        default=0.1,
        gt=0,
        description="dpo: strength of the pull towards the reference model (higher = closer).",
    )
    tiny_vocab_size: int = Field(
        default=2000,
        ge=300,
        description="Vocabulary size of the tokenizer trained for 'tiny:<preset>' bases.",
    )

    @property
    def model_name(self) -> str:
        """The name the trained version is registered under."""
        if self.name:
            return self.name
        dataset = self.dataset.split(":", 1)[0]
        return f"{dataset}-{self.stage}"

    @property
    def is_adapter(self) -> bool:
        """True when the run trains a PEFT adapter rather than every weight."""
        return self.method != "full"


def load_train_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """A TrainConfig from a YAML file (optional) with `overrides` (e.g. CLI flags) on top.

    None values in `overrides` are ignored so unset flags keep the file's value. Unknown keys
    or invalid values raise BadInputError naming each bad field.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        loaded = read_yaml(p, "train config")
        if loaded is not None and not isinstance(loaded, dict):
            raise BadInputError(f"train config {p} must be a mapping of field: value")
        data.update(loaded or {})
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors()
        )
        raise BadInputError(f"invalid train config: {problems}") from exc
