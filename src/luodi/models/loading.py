"""Load a registered base model (HF folder, GGUF file, or tiny preset) with its tokenizer.

Every loader returns a tokenizer with a chat template that marks assistant tokens, a pad token
and a sensible model_max_length, and a model whose embeddings fit that tokenizer; so training
and serving never branch on where a model came from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from luodi.errors import BadInputError, MissingDependencyError
from luodi.models.chat import ensure_chat_template, fit_embeddings
from luodi.models.tiny import build_tiny, train_tokenizer
from luodi.registry import Registry
from luodi.store import ArtifactInfo

Task = Literal["causal", "classify"]
_TASKS: tuple[str, ...] = ("causal", "classify")


@dataclass(frozen=True)
class LoadRequest:
    """What the caller wants from a base model besides its files."""

    task: Task
    num_labels: int | None
    dtype: torch.dtype
    tokenizer_texts: Iterable[str] | None
    tiny_vocab_size: int
    seed: int


Loader = Callable[[ArtifactInfo, LoadRequest], tuple[PreTrainedModel, PreTrainedTokenizerBase]]
LOADERS: Registry[Loader] = Registry("base model format")


def _auto_model(task: Task) -> Any:
    return AutoModelForSequenceClassification if task == "classify" else AutoModelForCausalLM


def _task_kwargs(req: LoadRequest) -> dict[str, Any]:
    if req.task != "classify":
        return {}
    if req.num_labels is None or req.num_labels < 1:
        raise BadInputError("a classifier needs num_labels >= 1 (1 = a scalar score)")
    return {"num_labels": req.num_labels}


def _unreadable(info: ArtifactInfo, where: Path, exc: BaseException) -> BadInputError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return BadInputError(f"cannot load base model {info.ref} from {where}: {reason}")


def _folder(info: ArtifactInfo) -> Path:
    path = Path(info.meta.get("path") or info.meta["source"])
    if not path.exists():
        raise BadInputError(
            f"base model {info.ref}: {path} no longer exists; register the model again "
            "with `luodi models add PATH` (or restore the files)"
        )
    return path


def _pretrained(
    info: ArtifactInfo, req: LoadRequest, folder: Path, **extra: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """from_pretrained for model and tokenizer; a head the checkpoint lacks is seeded."""
    kwargs = {"local_files_only": True, **extra}
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(req.seed)
            model = _auto_model(req.task).from_pretrained(
                folder, dtype=req.dtype, **_task_kwargs(req), **kwargs
            )
    except BadInputError:
        raise
    except ImportError as exc:  # e.g. GGUF support needs the `gguf` package
        raise MissingDependencyError(f"loading base model {info.ref} needs: {exc}") from exc
    except Exception as exc:  # readers raise anything: SafetensorError, struct.error, ...
        raise _unreadable(info, folder / extra.get("gguf_file", ""), exc) from exc
    return model, tokenizer


@LOADERS.register("hf")
def _load_hf(
    info: ArtifactInfo, req: LoadRequest
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    return _pretrained(info, req, _folder(info))


@LOADERS.register("gguf")
def _load_gguf(
    info: ArtifactInfo, req: LoadRequest
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    folder = _folder(info)
    gguf_file = info.meta["gguf_file"]
    if not (folder / gguf_file).is_file():
        raise BadInputError(f"base model {info.ref}: {folder / gguf_file} no longer exists")
    return _pretrained(info, req, folder, gguf_file=gguf_file)


@LOADERS.register("tiny")
def _load_tiny(
    info: ArtifactInfo, req: LoadRequest
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    if req.tokenizer_texts is None:
        raise BadInputError(
            f"base model {info.ref} is a tiny model trained from scratch: its tokenizer is "
            "trained on the dataset's texts, so pass tokenizer_texts"
        )
    preset = info.meta.get("preset") or str(info.meta["source"]).removeprefix("tiny:")
    tokenizer = train_tokenizer(req.tokenizer_texts, req.tiny_vocab_size)
    model = build_tiny(
        preset, tokenizer, task=req.task, num_labels=req.num_labels, seed=req.seed
    ).to(req.dtype)
    return model, tokenizer


def load_base(
    info: ArtifactInfo,
    *,
    task: Task = "causal",
    num_labels: int | None = None,
    dtype: torch.dtype = torch.float32,
    tokenizer_texts: Iterable[str] | None = None,
    seed: int = 0,
    tiny_vocab_size: int = 2000,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model and tokenizer of base model `info` (an artifact of kind "base_model").

    `task` "causal" gives a causal LM, "classify" a sequence classifier with `num_labels`
    outputs (its new head initialised from `seed`). HF folders and GGUF files load with
    `local_files_only`; tiny presets train a tokenizer on `tokenizer_texts` (required, with at
    most `tiny_vocab_size` tokens) and build a fresh model from `seed`. The tokenizer always has
    a chat template with generation markers and a pad token; the model's embeddings are resized
    when tokens had to be added. The model is in eval mode. BadInputError when the files are
    gone or unreadable (naming the path and the reason) or arguments do not fit the format.
    """
    if info.kind != "base_model":
        raise BadInputError(f"{info.ref} is a {info.kind}, not a base model")
    if task not in _TASKS:
        raise BadInputError(f"unknown model task {task!r}; known: {', '.join(_TASKS)}")
    req = LoadRequest(
        task=task,
        num_labels=num_labels,
        dtype=dtype,
        tokenizer_texts=tokenizer_texts,
        tiny_vocab_size=tiny_vocab_size,
        seed=seed,
    )
    model, tokenizer = LOADERS.get(str(info.meta.get("format")))(info, req)
    ensure_chat_template(tokenizer)
    fit_embeddings(model, tokenizer)
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if isinstance(max_pos, int) and tokenizer.model_max_length > max_pos:
        tokenizer.model_max_length = max_pos
    model.eval()
    return model, tokenizer
