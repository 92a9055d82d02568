"""Model versions: how a trained model is laid out in the store, loaded back and merged.

A model version folder holds `adapter/` (a PEFT adapter) or `model/` (full weights and the
tokenizer: a complete HF folder),
`tokenizer/`, `train_config.yaml` and `metrics.json`. An adapter on a base whose weights cannot
be rebuilt from the base artifact (a tiny model built from scratch, or a re-initialised
pretraining base) also keeps those weights in `base/`, so the version loads on its own.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from luodi.errors import BadInputError
from luodi.models.chat import fit_embeddings
from luodi.models.loading import load_base
from luodi.store import ArtifactInfo, Store

KIND = "model"
CONFIG_FILE = "train_config.yaml"
METRICS_FILE = "metrics.json"
CONFIG_HEADER = "# luodi train {stage} --config train_config.yaml\n"


def resolve_model(store: Store, ref: str) -> ArtifactInfo:
    """The model version `ref` (NAME, NAME:vN, or NAME@stage when the registry knows stages)."""
    try:
        from luodi.registry.stages import resolve_model as registry_resolve
    except ImportError:  # the stage registry is optional for plain references
        return store.resolve(ref, KIND)
    return registry_resolve(store, ref)


def write_version_files(
    folder: Path,
    *,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    adapter: bool,
    config: dict[str, Any],
    stage: str,
    metrics: dict[str, Any],
    base_weights: PreTrainedModel | Path | None = None,
) -> None:
    """Write a version's files into `folder` (the store's temporary draft folder).

    `base_weights` (a model or a folder holding one) is stored as `base/` for adapters whose
    base cannot be rebuilt from its artifact.
    """
    model.save_pretrained(folder / ("adapter" if adapter else "model"))
    tokenizer.save_pretrained(folder / "tokenizer")
    if not adapter:  # model/ is then a complete HF folder: a base for later runs or servers
        tokenizer.save_pretrained(folder / "model")
    if isinstance(base_weights, Path):
        shutil.copytree(base_weights, folder / "base")
    elif base_weights is not None:
        base_weights.save_pretrained(folder / "base")
    (folder / CONFIG_FILE).write_text(
        CONFIG_HEADER.format(stage=stage)
        + yaml.safe_dump(config, allow_unicode=True, sort_keys=False),
        encoding="utf-8",
    )
    (folder / METRICS_FILE).write_text(
        json.dumps(metrics, ensure_ascii=False, indent=2, default=float), encoding="utf-8"
    )


def _task(info: ArtifactInfo) -> str:
    """ "classify" for classifiers and reward models, "causal" for language models."""
    return str(info.meta.get("task") or "causal")


def _auto_class(info: ArtifactInfo) -> Any:
    if _task(info) == "classify":
        return AutoModelForSequenceClassification
    return AutoModelForCausalLM


def _num_labels(info: ArtifactInfo) -> int | None:
    if _task(info) != "classify":
        return None
    labels = info.meta.get("labels")
    return len(labels) if labels else 1  # a reward model: one scalar output


def _base_model(store: Store, info: ArtifactInfo, dtype: torch.dtype) -> PreTrainedModel:
    """The base weights an adapter version was trained on (with its head for classifiers)."""
    if (info.path / "base").is_dir():
        return _auto_class(info).from_pretrained(
            info.path / "base", dtype=dtype, local_files_only=True
        )
    base = info.meta.get("base") or {}
    base_info = store.resolve(base["ref"], "base_model")
    if base.get("sha256") and base_info.meta.get("sha256") not in (None, base["sha256"]):
        raise BadInputError(
            f"base model {base_info.ref} changed since {info.ref} was trained on it "
            f"(sha256 {base_info.meta.get('sha256')} != {base['sha256']})"
        )
    model, _ = load_base(
        base_info,
        task=_task(info),  # type: ignore[arg-type]
        num_labels=_num_labels(info),
        dtype=dtype,
        seed=int(info.meta.get("config", {}).get("seed", 0)),
    )
    return model


def load_model_version(
    store: Store, ref: str, *, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model and tokenizer of model version `ref`, in eval mode.

    Full versions load their own weights; adapter versions load the base (from `base/` or the
    base artifact, checked against the recorded sha256) with the adapter on top (a PeftModel).
    Versions of classifying stages (classify, reward) load as sequence classifiers whose config
    maps head indices to label names (`id2label`).
    """
    info = resolve_model(store, ref)
    tokenizer = AutoTokenizer.from_pretrained(info.path / "tokenizer", local_files_only=True)
    if (info.path / "model").is_dir():
        model = _auto_class(info).from_pretrained(
            info.path / "model", dtype=dtype, local_files_only=True
        )
    elif (info.path / "adapter").is_dir():
        from peft import PeftModel

        base = _base_model(store, info, dtype)
        fit_embeddings(base, tokenizer)
        model = PeftModel.from_pretrained(base, info.path / "adapter")
    else:
        raise BadInputError(f"model version {info.ref} has neither model/ nor adapter/ files")
    model.eval()
    return model, tokenizer


def merge(store: Store, ref: str, name: str | None = None) -> ArtifactInfo:
    """Merge adapter version `ref` into its base and register the result as a full version.

    The new version (of `name`, default the adapter's own name) has the adapter version as its
    parent and the same stage, base and config metadata with `adapter: false`. BadInputError
    for a full version or a method whose adapters cannot be merged (prefix, prompt).
    """
    from luodi.train.peft import METHODS

    info = resolve_model(store, ref)
    if not info.meta.get("adapter"):
        raise BadInputError(f"model version {info.ref} holds full weights: nothing to merge")
    method = str(info.meta.get("method"))
    if not METHODS.get(method).mergeable:
        mergeable = [m for m in METHODS.names() if METHODS.get(m).mergeable]
        raise BadInputError(
            f"{method} adapters cannot be merged into the weights (only {', '.join(mergeable)}); "
            "serve the adapter version as it is"
        )
    model, tokenizer = load_model_version(store, info.ref)
    merged = model.merge_and_unload()
    meta = {k: v for k, v in info.meta.items() if k not in ("adapter",)}
    meta.update(adapter=False, merged_from=info.ref)
    parents: Sequence[tuple[ArtifactInfo, str]] = [(info, "adapter")]
    with store.create(KIND, name or info.name, parents=parents, meta=meta) as draft:
        merged.save_pretrained(draft.path / "model")
        tokenizer.save_pretrained(draft.path / "model")
        tokenizer.save_pretrained(draft.path / "tokenizer")
        for file in (CONFIG_FILE, METRICS_FILE):
            if (info.path / file).is_file():
                shutil.copy2(info.path / file, draft.path / file)
    assert draft.artifact is not None
    return draft.artifact
