"""Split a dataset version into train/validation/test (or k folds) without leakage.

Near-duplicates never straddle splits: records are first clustered by MinHash similarity
(`luodi.data.minhash.cluster_near_duplicates`) and whole clusters ("groups") are assigned.
Every method fills per-split quotas computed up front, so counts match the ratios exactly
when all groups are singletons and closely otherwise:

- random: groups in a seeded shuffle;
- stratified: quotas per stratum (the representative's `by` value), each within one record
  of its exact share, with the rounding chosen so the split totals stay on target;
- time: groups ordered by their earliest time, so the oldest go to train and the newest to
  test;
- kfold: k equal quotas named fold-1..fold-k (stratified by `by` when given).

A group is assigned to the split whose quota range holds the group's midpoint position.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from luodi.data.datasets import load_records, record_kind, resolve, save_dataset
from luodi.data.records import Record, RecordKind, meta_of
from luodi.data.report import DatasetReport, DatasetResult
from luodi.errors import BadInputError
from luodi.progress import Progress, no_progress
from luodi.store import Store

SPLITS = ("train", "validation", "test")
METHODS = ("random", "stratified", "time", "kfold")
WRITE_BATCH = 2048


class SplitConfig(BaseModel):
    """How to split a dataset version (`luodi data split`)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="Dataset to split: NAME (latest version) or NAME:vN.")
    name: str | None = Field(
        default=None,
        description="Output dataset name; default: the input's name (a new version of it).",
    )
    method: Literal["random", "stratified", "time", "kfold"] = Field(
        default="random",
        description=(
            "random: seeded shuffle; stratified: keep each `by` value's share in every split; "
            "time: oldest records to train, newest to test (by a time in `by`); "
            "kfold: k folds named fold-1..fold-k."
        ),
    )
    ratios: tuple[float, float, float] = Field(
        default=(0.8, 0.1, 0.1),
        description=(
            "Shares of train, validation and test, each >= 0 and summing to 1 (a 0 leaves that "
            "split out). Also accepted as '0.8,0.1,0.1'. Not used by kfold."
        ),
    )
    by: str | None = Field(
        default=None,
        description=(
            "stratified: 'label' (labeled records) or a meta key such as 'category' "
            "(default 'label' for labeled records); time: a meta key holding an ISO "
            "date/datetime or a number; kfold: optional key to stratify folds by."
        ),
    )
    k: int = Field(default=5, description="Number of folds for kfold (at least 2).")
    seed: int = Field(default=0, description="Random seed; the same seed gives the same split.")
    near_dup_threshold: float = Field(
        default=0.8,
        description=(
            "MinHash Jaccard similarity (0-1] at which records count as near-duplicates; "
            "near-duplicates always land in the same split."
        ),
    )

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, v: Any) -> Any:
        if v not in METHODS:
            raise BadInputError(f"unknown split method {v!r}; choose one of {', '.join(METHODS)}")
        return v

    @field_validator("ratios", mode="before")
    @classmethod
    def _ratios(cls, v: Any) -> tuple[float, float, float]:
        if isinstance(v, str):
            v = v.replace("/", ",").split(",")
        if isinstance(v, dict):
            unknown = set(v) - set(SPLITS)
            if unknown:
                raise BadInputError(f"ratios: unknown splits {sorted(unknown)}; use {SPLITS}")
            v = [v.get(s, 0.0) for s in SPLITS]
        try:
            values = tuple(float(x) for x in v)
        except (TypeError, ValueError):
            raise BadInputError(
                f"ratios must be three numbers (train, validation, test): {v!r}"
            ) from None
        if len(values) != 3 or any(not math.isfinite(x) or x < 0 for x in values):
            raise BadInputError(
                f"ratios must be three non-negative numbers (train, validation, test): {v!r}"
            )
        if abs(sum(values) - 1.0) > 1e-6:
            raise BadInputError(f"ratios must sum to 1, got {sum(values):g} for {values}")
        if values[0] == 0:
            raise BadInputError("ratios: the train share must be above 0")
        return values  # type: ignore[return-value]

    @field_validator("k", mode="before")
    @classmethod
    def _k(cls, v: Any) -> Any:
        if not isinstance(v, int) or isinstance(v, bool) or v < 2:
            raise BadInputError(f"k must be an integer of at least 2, got {v!r}")
        return v

    @field_validator("near_dup_threshold", mode="before")
    @classmethod
    def _threshold(cls, v: Any) -> Any:
        if not isinstance(v, int | float) or not 0 < v <= 1:
            raise BadInputError(f"near_dup_threshold must be in (0, 1], got {v!r}")
        return v

    @model_validator(mode="after")
    def _by(self) -> SplitConfig:
        if self.method == "time" and not self.by:
            raise BadInputError("method time needs `by`: the meta key holding each record's time")
        if self.method == "random" and self.by:
            raise BadInputError(
                f"method random does not use by={self.by!r}; use method stratified to keep "
                "its proportions"
            )
        return self


# -- record values ---------------------------------------------------------------------


def value_of(kind: RecordKind, rec: Record, by: str) -> Any:
    """A record's `by` value: the `label` field of labeled records, else `meta[by]`."""
    if by == "label" and any(f.name == "label" for f in kind.fields):
        value = rec.get("label")
    else:
        value = meta_of(rec).get(by)
    return None if value == "" else value


def default_by(kind: RecordKind, by: str | None, purpose: str) -> str:
    """`by`, or 'label' for labeled records; other kinds must name a meta key."""
    if by:
        return by
    if kind.name == "labeled":
        return "label"
    raise BadInputError(
        f"{purpose} of {kind.name} records needs `by`: a meta key such as 'category'"
    )


def meta_keys(records: Sequence[Record], limit: int = 20) -> list[str]:
    """The most common meta keys among `records` (for error messages)."""
    keys: Counter[str] = Counter()
    for rec in records:
        keys.update(meta_of(rec).keys())
    return [k for k, _ in keys.most_common(limit)]


def values_or_error(kind: RecordKind, records: Sequence[Record], by: str) -> list[Any]:
    """Every record's `by` value; BadInputError naming how many lack it and what exists."""
    values = [value_of(kind, r, by) for r in records]
    missing = sum(1 for v in values if v is None)
    if missing:
        fields = ["label"] if kind.name == "labeled" else []
        known = fields + [f"meta.{k}" for k in meta_keys(records)]
        raise BadInputError(
            f"{missing} of {len(records)} records have no {by!r}; available: "
            f"{', '.join(known) or 'no meta keys'}"
        )
    return values


def parse_time(value: Any) -> tuple[str, float]:
    """('number', x) for numbers, ('datetime', epoch seconds) for ISO dates; naive = UTC."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int | float):
        return "number", float(value)
    text = str(value).strip()
    try:
        return "number", float(text)
    except ValueError:
        pass
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return "datetime", dt.timestamp()


def times_or_error(values: Sequence[Any], by: str) -> tuple[str, list[float]]:
    """Parse every time; BadInputError for unparseable values or numbers mixed with dates."""
    kinds: set[str] = set()
    times: list[float] = []
    bad: list[Any] = []
    for v in values:
        try:
            kind, t = parse_time(v)
        except (ValueError, TypeError):
            bad.append(v)
            continue
        kinds.add(kind)
        times.append(t)
    if bad:
        raise BadInputError(
            f"{len(bad)} records have a {by!r} that is neither an ISO date/datetime nor a "
            f"number, e.g. {bad[0]!r}"
        )
    if len(kinds) > 1:
        raise BadInputError(f"{by!r} mixes numbers and dates; use one or the other")
    return kinds.pop(), times


# -- allocation ------------------------------------------------------------------------


def allocate(sizes: dict[Any, int], ratios: Sequence[float]) -> dict[Any, list[int]]:
    """Integer quotas per stratum and split: each within 1 of `size * ratio`.

    Each stratum gets the floors of its exact shares; its leftover records go to the splits
    (among those with a fractional share) that lag furthest behind their overall target, so
    the split totals stay close to `total * ratio` (exact with a single stratum).
    """
    total = sum(sizes.values())
    exact_total = [total * r for r in ratios]
    targets = [math.floor(x) for x in exact_total]
    for s in sorted(range(len(ratios)), key=lambda s: -(exact_total[s] - targets[s]))[
        : total - sum(targets)
    ]:
        targets[s] += 1
    assigned = [0] * len(ratios)
    seen = 0
    out: dict[Any, list[int]] = {}
    for key in sorted(sizes, key=lambda k: (-sizes[k], str(k))):
        n = sizes[key]
        seen += n
        exact = [n * r for r in ratios]
        quota = [math.floor(x) for x in exact]
        left = n - sum(quota)
        # Where each split should stand once this stratum is in, were it all proportional.
        lag = [targets[s] * seen / total - assigned[s] - quota[s] for s in range(len(ratios))]
        order = sorted(
            range(len(ratios)),
            key=lambda s: (exact[s] - quota[s] <= 1e-9, -lag[s], -(exact[s] - quota[s]), s),
        )
        for s in order[:left]:
            quota[s] += 1
        for s in range(len(ratios)):
            assigned[s] += quota[s]
        out[key] = quota
    return out


def assign(groups: Sequence[Sequence[int]], quotas: Sequence[int]) -> list[int]:
    """Split index per group (in order): the quota range holding the group's midpoint."""
    bounds = [sum(quotas[: s + 1]) for s in range(len(quotas))]
    out = []
    pos = 0
    for g in groups:
        mid = pos + len(g) / 2
        s = next((i for i, b in enumerate(bounds) if mid < b), len(bounds) - 1)
        # A zero quota can only be "chosen" past the end; step back to a split that has room.
        while quotas[s] == 0 and s > 0:
            s -= 1
        out.append(s)
        pos += len(g)
    return out


def near_dup_groups(
    kind: RecordKind, records: Sequence[Record], threshold: float
) -> list[list[int]]:
    """Record indexes grouped by near-duplicate cluster, ordered by representative."""
    from luodi.data.minhash import cluster_near_duplicates

    reps = cluster_near_duplicates([kind.content(r) for r in records], threshold=threshold)
    members: dict[int, list[int]] = defaultdict(list)
    for i, rep in enumerate(reps):
        members[rep].append(i)
    return [members[rep] for rep in sorted(members)]


def split_names(cfg: SplitConfig) -> list[str]:
    """Output split names in quota order."""
    if cfg.method == "kfold":
        return [f"fold-{i}" for i in range(1, cfg.k + 1)]
    return list(SPLITS)


def plan(
    cfg: SplitConfig, kind: RecordKind, records: Sequence[Record]
) -> tuple[list[str], dict[str, Any]]:
    """The split name of every record and the notes describing how they were chosen."""
    n = len(records)
    if n == 0:
        raise BadInputError(f"dataset {cfg.dataset} has no records to split")
    names = split_names(cfg)
    ratios = [1 / cfg.k] * cfg.k if cfg.method == "kfold" else list(cfg.ratios)
    by: str | None = cfg.by
    if cfg.method == "stratified":
        by = default_by(kind, by, "stratified split")
    values = values_or_error(kind, records, by) if by else None
    time_kind, times = "", list[float]()
    if cfg.method == "time":  # parse before the costly clustering so bad times fail fast
        assert by and values is not None  # SplitConfig requires `by` for time
        time_kind, times = times_or_error(values, by)
    groups = near_dup_groups(kind, records, cfg.near_dup_threshold)
    if cfg.method == "kfold" and len(groups) < cfg.k:
        raise BadInputError(
            f"{n} records form {len(groups)} distinct (near-duplicate) groups: too few for "
            f"{cfg.k} folds; lower k or add records"
        )
    rng = random.Random(cfg.seed)
    notes: dict[str, Any] = {"method": cfg.method, "seed": cfg.seed}
    if cfg.method == "kfold":
        notes["k"] = cfg.k
    else:
        notes["ratios"] = dict(zip(SPLITS, cfg.ratios, strict=True))
    notes.update(
        by=by,
        near_dup_threshold=cfg.near_dup_threshold,
        groups=len(groups),
        groups_merged=sum(1 for g in groups if len(g) > 1),
        records_in_merged_groups=sum(len(g) for g in groups if len(g) > 1),
    )

    strata: dict[Any, list[list[int]]] = defaultdict(list)
    if cfg.method == "time":
        # Earliest member decides; ties keep stream order so the result is deterministic.
        groups = sorted(groups, key=lambda g: (min(times[i] for i in g), g[0]))
        strata[None] = list(groups)
    else:
        for g in groups:
            key = str(values[g[0]]) if values is not None else None
            strata[key].append(g)
        for key in sorted(strata, key=str):
            rng.shuffle(strata[key])
    quotas = allocate({k: sum(len(g) for g in gs) for k, gs in strata.items()}, ratios)

    split_of = [""] * n
    for key, gs in strata.items():
        for g, s in zip(gs, assign(gs, quotas[key]), strict=True):
            for i in g:
                split_of[i] = names[s]

    if values is not None and cfg.method != "time":
        dist: dict[str, Counter[str]] = {name: Counter() for name in names}
        for i, name in enumerate(split_of):
            dist[name][str(values[i])] += 1
        notes["distribution"] = {k: dict(sorted(c.items())) for k, c in dist.items() if c}
    if cfg.method == "time":
        notes["time_range"] = _time_ranges(split_of, times, time_kind)
    return split_of, notes


def _time_ranges(split_of: list[str], times: list[float], kind: str) -> dict[str, list[Any]]:
    spans: dict[str, list[float]] = {}
    for name, t in zip(split_of, times, strict=True):
        lo, hi = spans.get(name, [t, t])
        spans[name] = [min(lo, t), max(hi, t)]

    def show(t: float) -> Any:
        return datetime.fromtimestamp(t, UTC).isoformat() if kind == "datetime" else t

    return {k: [show(lo), show(hi)] for k, (lo, hi) in spans.items()}


def _batches(records: list[Record], split_of: list[str]) -> Iterator[list[Record]]:
    for start in range(0, len(records), WRITE_BATCH):
        chunk = records[start : start + WRITE_BATCH]
        yield [
            {**r, "split": s}
            for r, s in zip(chunk, split_of[start : start + WRITE_BATCH], strict=True)
        ]


def run_split(store: Store, cfg: SplitConfig, progress: Progress = no_progress) -> DatasetResult:
    """Assign every record of `cfg.dataset` to a split and save the result as a new version.

    The new version (of `cfg.name`, default the input's name) has the input as its lineage
    parent; its report notes the method, ratios, seed, `by`, how many near-duplicate groups
    were kept together and, when stratified, the per-split distribution of `by`. Any earlier
    split column is replaced. Raises BadInputError for empty datasets, records lacking `by`,
    unparseable times, or too few groups for k folds.
    """
    info = resolve(store, cfg.dataset)
    kind = record_kind(info)
    progress(task="split", total=3, message=f"reading {info.ref}")
    records = load_records(info)
    progress(task="split", advance=1, message=f"clustering {len(records)} records")
    split_of, notes = plan(cfg, kind, records)
    notes["parent"] = info.ref
    previous = {k: v for k, v in info.meta.get("splits", {}).items() if k != "unsplit"}
    if previous:
        notes["replaced_splits"] = previous
    progress(task="split", advance=1, message="writing")
    report = DatasetReport(
        name=cfg.name or info.name, stage="split", record_kind=kind.name, notes=notes
    )
    result = save_dataset(store, report, _batches(records, split_of), parents=[info])
    progress(task="split", advance=1, message=f"saved {result.dataset}")
    return result
