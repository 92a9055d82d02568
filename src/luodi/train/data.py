"""Which records a run trains and validates on, and how examples become padded batches.

Validation comes, in order of preference, from the `validation_dataset`, from the training
dataset's own `validation` split, or from a `val_ratio` share of the training records chosen
deterministically by the seed. When the dataset has a `train` split only that split is trained
on (its `test` split is never touched).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from luodi.data.datasets import load_records, record_kind
from luodi.data.records import Record
from luodi.errors import BadInputError
from luodi.store import ArtifactInfo
from luodi.train.config import TrainConfig
from luodi.train.stages import Example

IGNORE = -100


@dataclass
class RecordSplit:
    """Training and validation records of a run, and where each came from."""

    train: list[Record]
    validation: list[Record]
    source: dict[str, Any] = field(default_factory=dict)


def check_kind(info: ArtifactInfo, kinds: tuple[str, ...], stage: str) -> None:
    """BadInputError unless the dataset version's record kind is one the stage trains on."""
    have = record_kind(info).name
    if have not in kinds:
        raise BadInputError(
            f"dataset {info.ref} holds {have} records but stage {stage!r} needs "
            f"{' or '.join(kinds)} records"
        )


def _splits(info: ArtifactInfo) -> dict[str, int]:
    return dict(info.meta.get("splits") or {})


def select_records(
    cfg: TrainConfig, train_info: ArtifactInfo, val_info: ArtifactInfo | None
) -> RecordSplit:
    """The run's training and validation records (see the module docstring for the rules).

    `max_samples` caps the training records (the first N in dataset order). Raises
    BadInputError for an empty dataset or split.
    """
    splits = _splits(train_info)
    train_split = "train" if splits.get("train") else None
    records = load_records(train_info, train_split)
    if not records:
        where = f"split 'train' of {train_info.ref}" if train_split else train_info.ref
        raise BadInputError(f"dataset {where} is empty: nothing to train on")
    source: dict[str, Any] = {"train": f"{train_info.ref}" + (":train" if train_split else "")}
    validation: list[Record] = []
    if val_info is not None:
        vsplits = _splits(val_info)
        vsplit = "validation" if vsplits.get("validation") else None
        validation = load_records(val_info, vsplit)
        if not validation:
            raise BadInputError(f"validation dataset {val_info.ref} is empty")
        source["validation"] = val_info.ref + (":validation" if vsplit else "")
    elif splits.get("validation"):
        validation = load_records(train_info, "validation")
        source["validation"] = f"{train_info.ref}:validation"
    elif cfg.val_ratio > 0 and len(records) >= 2:
        order = list(range(len(records)))
        random.Random(cfg.seed).shuffle(order)
        n_val = min(len(records) - 1, max(1, math.ceil(len(records) * cfg.val_ratio)))
        held = set(order[:n_val])
        validation = [r for i, r in enumerate(records) if i in held]
        records = [r for i, r in enumerate(records) if i not in held]
        source["validation"] = f"val_ratio {cfg.val_ratio} of {source['train']} (seed {cfg.seed})"
    if cfg.max_samples is not None:
        records = records[: cfg.max_samples]
    return RecordSplit(train=records, validation=validation, source=source)


class ExampleDataset(torch.utils.data.Dataset[Example]):
    """A list of tokenized examples as a torch Dataset."""

    def __init__(self, examples: list[Example]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Example:
        return self.examples[i]


@dataclass
class PadCollator:
    """Right-pads `input_ids` with the pad id and `labels` with -100; masks the padding."""

    pad_id: int

    def __call__(self, batch: list[Example]) -> dict[str, torch.Tensor]:
        """Stack a list of examples into padded tensors."""
        width = max(len(ex["input_ids"]) for ex in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, ex in enumerate(batch):
            n = len(ex["input_ids"])
            ids[i, :n] = torch.tensor(ex["input_ids"], dtype=torch.long)
            labels[i, :n] = torch.tensor(ex["labels"], dtype=torch.long)
            mask[i, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class Preference(NamedTuple):
    """One preference pair: the record's id, its prompt and the better and worse answers."""

    id: str
    prompt: str
    chosen: str
    rejected: str


def preference_pairs(records: list[Record]) -> list[Preference]:
    """The pairs of every preference record that has a prompt and two distinct answers.

    Records missing a field or whose chosen equals rejected teach nothing and are skipped;
    BadInputError when none is left (naming why).
    """
    out: list[Preference] = []
    incomplete = same = 0
    for rec in records:
        prompt, chosen, rejected = (rec.get(k) or "" for k in ("prompt", "chosen", "rejected"))
        if not (prompt.strip() and chosen.strip() and rejected.strip()):
            incomplete += 1
        elif chosen == rejected:
            same += 1
        else:
            out.append(Preference(str(rec.get("id") or "?"), prompt, chosen, rejected))
    if not out:
        raise BadInputError(
            f"none of the {len(records)} preference record(s) can be trained on: {incomplete} "
            f"lack a prompt, chosen or rejected text, {same} have chosen == rejected"
        )
    return out


def check_prompt_lengths(lengths: list[tuple[str, int]], cutoff: int) -> None:
    """BadInputError when some prompt (record id, token count) does not fit below `cutoff`.

    Truncating such a prompt would train on answers to a question the model never sees.
    """
    too_long = [(rid, n) for rid, n in lengths if n >= cutoff]
    if too_long:
        worst = max(n for _, n in too_long)
        raise BadInputError(
            f"cutoff_len {cutoff} is shorter than the prompt of {len(too_long)} record(s) (e.g. "
            f"{too_long[0][0]}: {too_long[0][1]} tokens before the answer); set cutoff_len above "
            f"{worst} or shorten those prompts"
        )
