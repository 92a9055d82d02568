"""Training methods: `full` or a PEFT adapter, each registered by name.

A method turns a TrainConfig and a loaded model into the model to train (a PeftModel for
adapters) and may supply its own optimizer (LoRA+ gives the B matrices a larger learning rate).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from luodi.errors import BadInputError, MissingDependencyError
from luodi.registry import Registry
from luodi.train.config import TrainConfig

# Module names whose Linear layers read the MLP's hidden state: IA3 scales their inputs.
_FEEDFORWARD_HINTS = ("mlp", "feed_forward", "ffn")


def linear_module_names(model: nn.Module) -> list[str]:
    """Short names (last path component) of every nn.Linear except the output head(s)."""
    heads: set[int] = set()
    get_out = getattr(model, "get_output_embeddings", None)
    out = get_out() if callable(get_out) else None
    if out is not None:
        heads.add(id(out))
    for head_name in ("score", "classifier", "lm_head"):
        head = getattr(model, head_name, None)
        if isinstance(head, nn.Module):
            heads.add(id(head))
    names = {
        qual.rsplit(".", 1)[-1]
        for qual, mod in model.named_modules()
        if isinstance(mod, nn.Linear) and id(mod) not in heads
    }
    return sorted(names)


def resolve_targets(model: nn.Module, target_modules: str | list[str]) -> list[str]:
    """The module names an adapter wraps: 'all' = every Linear but the head; checked names else.

    Raises BadInputError listing the model's linear modules when a name is not among them.
    """
    available = linear_module_names(model)
    if not available:
        raise BadInputError("the model has no linear layers an adapter could target")
    if target_modules == "all":
        return available
    unknown = [m for m in target_modules if m not in available]
    if unknown or not target_modules:
        raise BadInputError(
            f"target modules {unknown or '[]'} do not exist in this model; "
            f"its linear modules are: {', '.join(available)} (or use 'all')"
        )
    return list(target_modules)


def feedforward_of(model: nn.Module, targets: list[str]) -> list[str]:
    """Which of `targets` sit in the MLP blocks (IA3 scales their inputs, not outputs).

    A target counts as feedforward when it projects back to the hidden size from inside an MLP
    (e.g. Llama's down_proj), matching peft's own per-architecture defaults.
    """
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    known = TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING.get(model_type or "")
    if known:
        return [t for t in targets if t in known]
    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    ff = set()
    for qual, mod in model.named_modules():
        short = qual.rsplit(".", 1)[-1]
        if (
            isinstance(mod, nn.Linear)
            and short in targets
            and any(h in qual for h in _FEEDFORWARD_HINTS)
            and mod.out_features == hidden
        ):
            ff.add(short)
    return sorted(ff)


@dataclass(frozen=True)
class Method:
    """A training method: how it wraps the model, and optionally its own optimizer."""

    name: str
    adapter: bool
    peft_config: Callable[[TrainConfig, nn.Module, Any], Any] | None = None
    """(cfg, model, task_type) -> a peft config; None for full fine-tuning."""
    optimizer: Callable[[TrainConfig, nn.Module], torch.optim.Optimizer] | None = None
    """Custom optimizer (LoRA+); None lets the Trainer build the configured one."""
    requires: Callable[[], None] = field(default=lambda: None)
    """Raises MissingDependencyError when the method cannot run on this machine."""
    mergeable: bool = False


METHODS: Registry[Method] = Registry("training method")


def _lora(cfg: TrainConfig, model: nn.Module, task_type: Any, *, dora: bool = False) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        task_type=task_type,
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=resolve_targets(model, cfg.target_modules),
        use_dora=dora,
    )


def _ia3(cfg: TrainConfig, model: nn.Module, task_type: Any) -> Any:
    from peft import IA3Config

    targets = resolve_targets(model, cfg.target_modules)
    return IA3Config(
        task_type=task_type,
        target_modules=targets,
        feedforward_modules=feedforward_of(model, targets),
    )


def _prefix(cfg: TrainConfig, model: nn.Module, task_type: Any) -> Any:
    from peft import PrefixTuningConfig

    return PrefixTuningConfig(task_type=task_type, num_virtual_tokens=cfg.num_virtual_tokens)


def _prompt(cfg: TrainConfig, model: nn.Module, task_type: Any) -> Any:
    from peft import PromptTuningConfig

    return PromptTuningConfig(task_type=task_type, num_virtual_tokens=cfg.num_virtual_tokens)


def optimizer_class(cfg: TrainConfig) -> tuple[type[torch.optim.Optimizer], dict[str, Any]]:
    """The torch optimizer class and kwargs matching `cfg.optimizer` (used by LoRA+)."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD, {}
    if cfg.optimizer == "adafactor":
        return torch.optim.Adafactor, {}
    return torch.optim.AdamW, {}


def _loraplus_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    from peft.optimizers import create_loraplus_optimizer

    cls, kwargs = optimizer_class(cfg)
    return create_loraplus_optimizer(
        model,
        cls,
        lr=cfg.learning_rate,
        loraplus_lr_ratio=cfg.loraplus_lr_ratio,
        weight_decay=cfg.weight_decay,
        **kwargs,
    )


def _require_qlora() -> None:
    missing = []
    if not torch.cuda.is_available():
        missing.append("a CUDA GPU")
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("bitsandbytes (pip install bitsandbytes)")
    if missing:
        raise MissingDependencyError(
            f"qlora needs {' and '.join(missing)}; use --method lora on this machine"
        )


METHODS.add("full", Method("full", adapter=False))
METHODS.add("lora", Method("lora", adapter=True, peft_config=_lora, mergeable=True))
METHODS.add(
    "lora_plus",
    Method(
        "lora_plus",
        adapter=True,
        peft_config=_lora,
        optimizer=_loraplus_optimizer,
        mergeable=True,
    ),
)
METHODS.add(
    "dora",
    Method(
        "dora",
        adapter=True,
        peft_config=lambda c, m, t: _lora(c, m, t, dora=True),
        mergeable=True,
    ),
)
METHODS.add("ia3", Method("ia3", adapter=True, peft_config=_ia3, mergeable=True))
METHODS.add("prefix", Method("prefix", adapter=True, peft_config=_prefix))
METHODS.add("prompt", Method("prompt", adapter=True, peft_config=_prompt))
METHODS.add(
    "qlora",
    Method("qlora", adapter=True, peft_config=_lora, requires=_require_qlora, mergeable=True),
)


def check_method(cfg: TrainConfig, model: nn.Module) -> Method:
    """The configured method, after checking it can run here and its targets exist."""
    method = METHODS.get(cfg.method)
    method.requires()
    if method.peft_config is not None and cfg.method not in ("prefix", "prompt"):
        resolve_targets(model, cfg.target_modules)
    return method


def apply_method(cfg: TrainConfig, model: nn.Module, task: str = "causal") -> nn.Module:
    """Wrap `model` for training with the configured method (a PeftModel for adapters).

    For full fine-tuning every parameter is made trainable and the model returned as is.
    """
    method = check_method(cfg, model)
    if method.peft_config is None:
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    from peft import TaskType, get_peft_model

    task_type = TaskType.SEQ_CLS if task == "classify" else TaskType.CAUSAL_LM
    return get_peft_model(model, method.peft_config(cfg, model, task_type))


def prepare_quantized(model: nn.Module) -> nn.Module:
    """Make a 4-bit (bitsandbytes) model trainable with adapters (qlora)."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model)
