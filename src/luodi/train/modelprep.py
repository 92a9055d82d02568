"""Loading the base a run trains: the stage's head, tokenizer checks, qlora, from-scratch.

Split from runner.py so the runner stays about the run itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from luodi.data.records import get_kind
from luodi.errors import BadInputError
from luodi.models.loading import load_base
from luodi.models.tiny import build_tiny
from luodi.store import ArtifactInfo
from luodi.train.config import TrainConfig
from luodi.train.data import RecordSplit
from luodi.train.stages import Stage, StageSetup


def _texts(records: list[dict[str, Any]], kind_name: str) -> list[str]:
    kind = get_kind(kind_name)
    return [t for r in records for t in kind.texts(r) if t]


def reinitialise(model: PreTrainedModel, seed: int) -> PreTrainedModel:
    """Fresh weights with the same architecture (pretraining from scratch on a real base)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = AutoModelForCausalLM.from_config(model.config)
    fresh.generation_config = model.generation_config
    return fresh


def drop_gguf_marker(model: PreTrainedModel) -> None:
    """Forget that weights came from GGUF: transformers dequantizes them to plain tensors on
    load but keeps a "gguf quantized" marker that makes the Trainer refuse to train them."""
    model.hf_quantizer = None
    if "is_quantized" in vars(model):
        model.is_quantized = False
    if "quantization_method" in vars(model):
        del model.quantization_method
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config


def set_dropout(model: torch.nn.Module, p: float) -> None:
    """Set attention dropout on the config and every attention module."""
    model.config.attention_dropout = p  # type: ignore[union-attr]
    for m in model.modules():
        if isinstance(getattr(m, "attention_dropout", None), float):
            m.attention_dropout = p  # type: ignore[assignment]


def _load_quantized(
    info: ArtifactInfo, task: str, num_labels: int | None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A 4-bit (NF4) base for qlora: only HF model folders can be quantised on load."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BitsAndBytesConfig

    from luodi.models.chat import ensure_chat_template, fit_embeddings
    from luodi.train.peft import prepare_quantized

    if info.meta.get("format") != "hf":
        raise BadInputError(
            f"qlora needs an HF model folder as base; {info.ref} is {info.meta.get('format')}"
        )
    folder = Path(info.meta.get("path") or info.meta["source"])
    quant = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
    )
    auto = AutoModelForSequenceClassification if task == "classify" else AutoModelForCausalLM
    extra = {"num_labels": num_labels} if task == "classify" else {}
    model = auto.from_pretrained(folder, quantization_config=quant, local_files_only=True, **extra)
    tokenizer = ensure_chat_template(AutoTokenizer.from_pretrained(folder, local_files_only=True))
    fit_embeddings(model, tokenizer)
    return prepare_quantized(model), tokenizer


def load_model(
    cfg: TrainConfig,
    stage: Stage,
    setup: StageSetup,
    base_info: ArtifactInfo,
    records: RecordSplit,
    kind_name: str,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model with the stage's head, and its tokenizer (the stage's, when it sets one)."""
    is_tiny = base_info.meta.get("format") == "tiny"
    if cfg.method == "qlora":
        model, tokenizer = _load_quantized(base_info, stage.task, setup.num_labels)
    elif is_tiny and setup.tokenizer is not None:
        preset = base_info.meta.get("preset") or str(base_info.meta["source"]).removeprefix("tiny:")
        tokenizer = setup.tokenizer
        model = build_tiny(
            preset, tokenizer, task=stage.task, num_labels=setup.num_labels, seed=cfg.seed
        )
    else:
        model, tokenizer = load_base(
            base_info,
            task=stage.task,
            num_labels=setup.num_labels,
            tokenizer_texts=_texts(records.train, kind_name) if is_tiny else None,
            seed=cfg.seed,
            tiny_vocab_size=cfg.tiny_vocab_size,
        )
    if setup.tokenizer is not None and tokenizer.get_vocab() != setup.tokenizer.get_vocab():
        raise BadInputError(
            f"stage {stage.name} needs the base to share its tokenizer, but base {base_info.ref} "
            f"has a different vocabulary ({len(tokenizer)} vs {len(setup.tokenizer)} tokens); "
            "use a base with the same tokenizer, or a tiny:<preset> base (built on it)"
        )
    if stage.task == "classify" and model.config.pad_token_id is None:
        # Sequence classifiers find each row's last token through the pad id.
        model.config.pad_token_id = tokenizer.pad_token_id
    if setup.id2label is not None:
        model.config.id2label = dict(setup.id2label)
        model.config.label2id = {v: k for k, v in setup.id2label.items()}
    return model, tokenizer
