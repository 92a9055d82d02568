"""Runs a recipe's operators over batches of records, locally or over Ray Data.

Both engines run the same chain function on each batch. Dropped records are not removed
inside the chain but annotated (`_drop` = operator index, `_reason`, `_detail`), and
modifications are noted in `_mod`; the driver then streams the annotated records once to
count per-operator statistics and write the survivors. So the two engines share every
decision and their statistics are computed by the same code. A global operator (dedup,
boilerplate) splits the chain: its input is spooled (local: a pickle file; Ray: materialized)
and fed to its `fit` before processing continues.
"""

from __future__ import annotations

import json
import pickle
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, Field

from luodi.data.ops.base import Drop, Operator
from luodi.data.records import Record, RecordKind
from luodi.errors import BadInputError, MissingDependencyError
from luodi.progress import Progress, no_progress
from luodi.registry import Registry

Batches = Iterable[list[Record]]
ANNOTATIONS = ("_drop", "_reason", "_detail", "_mod")
EXAMPLES_PER_REASON = 5
EXAMPLE_CHARS = 300


class OpStats(BaseModel):
    """What one operator did: records in, kept, dropped, modified, and why it dropped them."""

    step: int = Field(description="1-based position in the recipe.")
    op: str = Field(description="Operator name.")
    params: dict[str, Any] = Field(default_factory=dict, description="Operator parameters.")
    records_in: int = 0
    kept: int = 0
    dropped: int = 0
    modified: int = 0
    drop_reasons: dict[str, int] = Field(default_factory=dict)
    examples: dict[str, list[dict[str, str]]] = Field(
        default_factory=dict, description="Up to 5 dropped records per reason (id, text, detail)."
    )


def _annotate(rec: Record) -> Record:
    return {**rec, "_drop": -1, "_reason": None, "_detail": None, "_mod": []}


def apply_chain(ops: list[tuple[int, Operator]], batch: list[Record]) -> list[Record]:
    """Run `ops` (with their recipe indexes) over an annotated batch; returns it annotated."""
    batch = list(batch)
    for idx, op in ops:
        live = [i for i, r in enumerate(batch) if r["_drop"] < 0]
        if not live:
            break
        outs = op.process([batch[i] for i in live])
        if len(outs) != len(live):
            raise RuntimeError(f"operator {op.name} returned {len(outs)} for {len(live)} records")
        for i, out in zip(live, outs, strict=True):
            if isinstance(out, Drop):
                batch[i] = {**batch[i], "_drop": idx, "_reason": out.reason, "_detail": out.detail}
            elif out is not batch[i]:
                batch[i] = {**out, "_mod": [*batch[i]["_mod"], idx]}
    return batch


def _segments(ops: list[Operator]) -> list[list[tuple[int, Operator]]]:
    """Consecutive runs of operators; each global operator starts a new run."""
    segs: list[list[tuple[int, Operator]]] = []
    for i, op in enumerate(ops):
        if op.is_global or not segs:
            segs.append([])
        segs[-1].append((i, op))
    return segs


def _live(batches: Batches) -> Iterator[list[Record]]:
    for b in batches:
        yield [r for r in b if r["_drop"] < 0]


class _Spool:
    """A pickle file of batches, replayable any number of times (local global-op input)."""

    def __init__(self, batches: Batches, workdir: Path) -> None:
        fd, name = tempfile.mkstemp(suffix=".spool", dir=workdir)
        self.path = Path(name)
        with open(fd, "wb") as f:
            for b in batches:
                pickle.dump(b, f, protocol=pickle.HIGHEST_PROTOCOL)

    def __iter__(self) -> Iterator[list[Record]]:
        with open(self.path, "rb") as f:
            while True:
                try:
                    yield pickle.load(f)
                except EOFError:
                    return


def _local(ops: list[Operator], source: Batches, workdir: Path) -> Iterator[list[Record]]:
    stream: Iterable[list[Record]] = ([_annotate(r) for r in b] for b in source)
    for seg in _segments(ops):
        first = seg[0][1]
        if first.is_global:
            spool = _Spool(stream, workdir)
            first.fit(_live(spool))
            stream = spool
        stream = _mapped(seg, stream)
    yield from stream


def _mapped(seg: list[tuple[int, Operator]], stream: Batches) -> Iterator[list[Record]]:
    for b in stream:
        yield apply_chain(seg, b)


def annotated_schema(kind: RecordKind) -> pa.Schema:
    """The kind's schema plus the pipeline's annotation columns (Ray batches carry them)."""
    return (
        kind.schema.append(pa.field("_drop", pa.int32()))
        .append(pa.field("_reason", pa.string()))
        .append(pa.field("_detail", pa.string()))
        .append(pa.field("_mod", pa.list_(pa.int32())))
    )


class _RayChain:
    """The chain function Ray Data maps over pyarrow batches."""

    def __init__(self, seg: list[tuple[int, Operator]], schema: pa.Schema) -> None:
        self.seg, self.schema = seg, schema

    def __call__(self, table: pa.Table) -> pa.Table:
        out = apply_chain(self.seg, table.to_pylist())
        return pa.Table.from_pylist(out, schema=self.schema)


def _start_ray(ray: Any, attempts: int = 3) -> None:
    """Connect to Ray ($RAY_ADDRESS) or start a local instance. Ray waits 30 s for its GCS
    server to come up, which a busy machine can exceed; a timed-out start is shut down and
    tried again."""
    for attempt in range(1, attempts + 1):
        if ray.is_initialized():
            return
        try:
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
            return
        except RuntimeError as exc:
            if "Timed out" not in str(exc) or attempt == attempts:
                raise
            ray.shutdown()


def _ray(ops: list[Operator], source: Batches, workdir: Path) -> Iterator[list[Record]]:
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(
            "the ray engine needs Ray Data: pip install 'luodi[scale]'"
        ) from None
    kind = ops[0].kind if ops else None
    if kind is None:
        yield from source
        return
    schema = annotated_schema(kind)
    _start_ray(ray)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    tables = [pa.Table.from_pylist([_annotate(r) for r in b], schema=schema) for b in source]
    if not tables:
        return
    ds = ray.data.from_arrow(tables)
    for seg in _segments(ops):
        first = seg[0][1]
        if first.is_global:
            ds = ds.materialize()
            first.fit(
                [r for r in t.to_pylist() if r["_drop"] < 0]
                for t in ds.iter_batches(batch_format="pyarrow", batch_size=4096)
            )
        ds = ds.map_batches(_RayChain(seg, schema), batch_format="pyarrow", batch_size=1024)
    for t in ds.iter_batches(batch_format="pyarrow", batch_size=4096):
        yield t.to_pylist()


Engine = Callable[[list[Operator], Batches, Path], Iterator[list[Record]]]
ENGINES: Registry[Engine] = Registry("engine")
ENGINES.add("local", _local)
ENGINES.add("ray", _ray)


class ChainResult(BaseModel):
    """Totals of a recipe run and each operator's statistics."""

    records_in: int
    records_out: int
    operators: list[OpStats]


def run_ops(
    ops: list[Operator],
    source: Batches,
    sink: Callable[[list[Record]], None],
    *,
    engine: str = "local",
    progress: Progress = no_progress,
) -> ChainResult:
    """Run `ops` over `source` batches on `engine`, passing surviving records to `sink`.

    Returns per-operator statistics. Survivors keep their input order on both engines.
    """
    if engine not in ENGINES:
        raise BadInputError(f"unknown engine {engine!r}; known: {', '.join(ENGINES.names())}")
    stats = [
        OpStats(step=i + 1, op=op.name, params=op.model_dump(mode="json"))
        for i, op in enumerate(ops)
    ]
    dropped = [0] * len(ops)
    modified = [0] * len(ops)
    reasons: list[Counter[str]] = [Counter() for _ in ops]
    examples: list[dict[str, list[dict[str, str]]]] = [{} for _ in ops]
    total = kept = 0
    kind = ops[0].kind if ops else None
    progress(task="records", total=None)
    with tempfile.TemporaryDirectory(prefix="luodi-pipe-") as wd:
        for batch in ENGINES.get(engine)(ops, source, Path(wd)):
            out = []
            for r in batch:
                total += 1
                for j in r.get("_mod") or []:
                    modified[j] += 1
                d = r.get("_drop", -1)
                if d is not None and d >= 0:
                    dropped[d] += 1
                    reasons[d][r["_reason"]] += 1
                    ex = examples[d].setdefault(r["_reason"], [])
                    if len(ex) < EXAMPLES_PER_REASON:
                        text = kind.content(r) if kind else json.dumps(r, ensure_ascii=False)
                        ex.append(
                            {
                                "id": r["id"],
                                "text": text[:EXAMPLE_CHARS],
                                "detail": r["_detail"] or "",
                            }
                        )
                    continue
                for a in ANNOTATIONS:
                    r.pop(a, None)
                out.append(r)
            kept += len(out)
            if out:
                sink(out)
            progress(task="records", advance=len(batch))
    n = total
    for i, s in enumerate(stats):
        s.records_in = n
        s.dropped = dropped[i]
        s.kept = n - dropped[i]
        s.modified = modified[i]
        s.drop_reasons = dict(reasons[i])
        s.examples = examples[i]
        n = s.kept
    return ChainResult(records_in=total, records_out=kept, operators=stats)
