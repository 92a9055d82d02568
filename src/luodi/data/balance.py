"""Class balance: report a dataset's class distribution per split, or oversample minorities.

`report` creates nothing; it returns the distribution. `oversample` copies records of the
smaller classes (ids `<id>-os<k>`, same split as their source) until each class reaches the
target, and saves a new version. Only the train split is oversampled when the dataset is
split: a copy in validation or test would inflate evaluation, and copies of a train record
stay in train, so nothing leaks. An unsplit dataset is oversampled as a whole; splitting it
afterwards keeps each copy with its source, because exact copies are near-duplicates.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from luodi.data.datasets import iter_batches, load_records, record_kind, resolve, save_dataset
from luodi.data.records import Record, RecordKind
from luodi.data.report import DatasetReport, DatasetResult
from luodi.data.split import default_by, meta_keys, value_of
from luodi.errors import BadInputError
from luodi.progress import Progress, no_progress
from luodi.store import Store

MISSING = "(missing)"
STRATEGIES = ("oversample",)
WRITE_BATCH = 2048


class BalanceConfig(BaseModel):
    """How to balance a dataset version's classes (`luodi data balance`)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="Dataset to balance: NAME (latest version) or NAME:vN.")
    name: str | None = Field(
        default=None,
        description="Output dataset name (oversample); default: the input's name.",
    )
    by: str | None = Field(
        default=None,
        description=(
            "What defines a class: 'label' (the default for labeled records) or a meta key "
            "such as 'category' (required for other record kinds)."
        ),
    )
    strategy: Literal["oversample"] = Field(
        default="oversample",
        description=(
            "oversample: copy minority-class records of the train split (or of an unsplit "
            "dataset) up to the target and save a new version. (To only look at the "
            "distribution, use balance_report / `luodi data balance --strategy report`.)"
        ),
    )
    target: Literal["max"] | int = Field(
        default="max",
        description=(
            "Class size to reach when oversampling: 'max' (the largest class) or a number; "
            "classes already at or above it are left as they are (never downsampled)."
        ),
    )
    seed: int = Field(default=0, description="Random seed choosing which records are copied.")

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy(cls, v: Any) -> Any:
        if v not in STRATEGIES:
            raise BadInputError(f"unknown balance strategy {v!r}; choose oversample")
        return v

    @field_validator("target", mode="before")
    @classmethod
    def _target(cls, v: Any) -> Any:
        if v == "max":
            return v
        try:
            n = int(v)
        except (TypeError, ValueError):
            raise BadInputError(f"target must be 'max' or a positive integer, got {v!r}") from None
        if isinstance(v, bool) or n < 1 or (isinstance(v, float) and v != n):
            raise BadInputError(f"target must be 'max' or a positive integer, got {v!r}")
        return n


def _class(kind: RecordKind, rec: Record, by: str) -> str:
    value = value_of(kind, rec, by)
    return MISSING if value is None else str(value)


def _sorted(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def balance_report(store: Store, ref: str, by: str | None = None) -> dict[str, dict[str, int]]:
    """Class counts per split ('unsplit' for records without one), largest class first.

    Streams the dataset (bounded memory). Records without the `by` value are counted under
    '(missing)'; `by` defaults to 'label' for labeled records.
    """
    info = resolve(store, ref)
    kind = record_kind(info)
    by = default_by(kind, by, "balancing")
    dist: dict[str, Counter[str]] = defaultdict(Counter)
    for batch in iter_batches(info):
        for rec in batch:
            dist[rec.get("split") or "unsplit"][_class(kind, rec, by)] += 1
    return {split: _sorted(c) for split, c in sorted(dist.items())}


def _distribution(kind: RecordKind, records: list[Record], by: str) -> dict[str, dict[str, int]]:
    dist: dict[str, Counter[str]] = defaultdict(Counter)
    for rec in records:
        dist[rec.get("split") or "unsplit"][_class(kind, rec, by)] += 1
    return {split: _sorted(c) for split, c in sorted(dist.items())}


def oversample(
    records: list[Record],
    classes: dict[str, list[int]],
    target: int,
    seed: int,
) -> tuple[list[Record], dict[str, int]]:
    """Copies raising every class in `classes` (record indexes) to `target` records.

    Each class's records are shuffled with `seed` and copied round-robin, so every record is
    copied once before any is copied twice. A copy is the source with id `<id>-os<k>` (k
    counting that source's copies, skipping ids already taken). Returns (copies, added per
    class).
    """
    rng = random.Random(seed)
    used = {r["id"] for r in records}
    copies: list[Record] = []
    added: dict[str, int] = {}
    for cls in sorted(classes):
        members = list(classes[cls])
        need = target - len(members)
        if need <= 0:
            continue
        rng.shuffle(members)
        for j in range(need):
            src = records[members[j % len(members)]]
            k = j // len(members) + 1
            new_id = f"{src['id']}-os{k}"
            while new_id in used:
                k += 1
                new_id = f"{src['id']}-os{k}"
            used.add(new_id)
            copies.append({**src, "id": new_id})
        added[cls] = need
    return copies, added


def _batches(records: list[Record]) -> Iterator[list[Record]]:
    for start in range(0, len(records), WRITE_BATCH):
        yield records[start : start + WRITE_BATCH]


def run_balance(
    store: Store, cfg: BalanceConfig, progress: Progress = no_progress
) -> DatasetResult:
    """Balance `cfg.dataset` by `cfg.by` (`balance_report` only shows the distribution).

    strategy 'oversample': copies minority-class records of the train split (of the whole
    dataset when it is unsplit; validation/test/folds are never touched) up to the target,
    saves a new version whose parent is the input and whose report notes the distribution
    before and after, and returns it. Raises BadInputError when a split dataset has no train
    split or when no record to oversample has the `by` value.
    """
    info = resolve(store, cfg.dataset)
    kind = record_kind(info)
    by = default_by(kind, cfg.by, "balancing")
    progress(task="balance", total=2, message=f"reading {info.ref}")
    records = load_records(info)
    splits = {r.get("split") or "" for r in records}
    if splits - {""}:
        if "train" not in splits:
            raise BadInputError(
                f"dataset {info.ref} has splits {', '.join(sorted(splits - {''}))} but no "
                "train split; oversampling applies to train only"
            )
        pool_split = "train"
    else:
        pool_split = ""
    classes: dict[str, list[int]] = defaultdict(list)
    missing = 0
    for i, rec in enumerate(records):
        if (rec.get("split") or "") != pool_split:
            continue
        cls = _class(kind, rec, by)
        if cls == MISSING:
            missing += 1
        else:
            classes[cls].append(i)
    where = "train records" if pool_split else "records"
    if not classes:
        known = (["label"] if kind.name == "labeled" else []) + [
            f"meta.{k}" for k in meta_keys(records)
        ]
        raise BadInputError(
            f"none of the {missing} {where} of {info.ref} has {by!r}; available: "
            f"{', '.join(known) or 'no meta keys'}"
        )
    largest = max(len(v) for v in classes.values())
    target = largest if cfg.target == "max" else int(cfg.target)
    copies, added = oversample(records, classes, target, cfg.seed)
    progress(task="balance", advance=1, message=f"adding {len(copies)} copies")
    out = records + copies
    notes: dict[str, Any] = {
        "parent": info.ref,
        "by": by,
        "strategy": cfg.strategy,
        "target": cfg.target,
        "target_size": target,
        "seed": cfg.seed,
        "oversampled_split": pool_split or "unsplit (whole dataset)",
        "added": added,
        "before": _distribution(kind, records, by),
        "after": _distribution(kind, out, by),
    }
    if missing:
        notes["records_without_class"] = missing
    present = {_class(kind, r, by) for r in records} - {MISSING}
    absent = sorted(present - set(classes))
    if absent:
        notes["classes_absent_from_oversampled_split"] = absent
    report = DatasetReport(
        name=cfg.name or info.name, stage="balance", record_kind=kind.name, notes=notes
    )
    result = save_dataset(store, report, _batches(out), parents=[info])
    progress(task="balance", advance=1, message=f"saved {result.dataset}")
    return result
