"""Dataset versions: Parquet files plus a manifest, registered atomically in the store.

A dataset version folder holds `data/part-NNNNN.parquet` (one logical table; the `split`
column names each record's split), `report.json` and `report.html`. Its manifest meta holds
the record kind, row counts per split, the schema, source files with hashes, the recipe or
stage parameters that made it, and what was skipped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from luodi.data.records import Record, RecordKind, get_kind
from luodi.data.report import DatasetReport, DatasetResult, write_report
from luodi.errors import BadInputError, StageFailedError
from luodi.store import ArtifactInfo, Store

KIND = "dataset"
ROWS_PER_FILE = 200_000
READ_BATCH = 2048


class DatasetWriter:
    """Streams records of one kind into Parquet parts under `folder/data`, counting splits."""

    def __init__(self, folder: Path, kind: RecordKind, rows_per_file: int = ROWS_PER_FILE) -> None:
        self.folder = folder / "data"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.kind = kind
        self.rows_per_file = rows_per_file
        self.rows = 0
        self.splits: Counter[str] = Counter()
        self._writer: pq.ParquetWriter | None = None
        self._in_file = 0
        self._files = 0

    def write(self, records: list[Record]) -> None:
        """Append records (extra keys are ignored; missing fields become null)."""
        if not records:
            return
        try:
            table = pa.Table.from_pylist(records, schema=self.kind.schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise StageFailedError(f"cannot write {self.kind.name} records: {exc}") from exc
        if self._writer is None or self._in_file >= self.rows_per_file:
            self.close()
            path = self.folder / f"part-{self._files:05d}.parquet"
            self._writer = pq.ParquetWriter(path, self.kind.schema, compression="zstd")
            self._files += 1
            self._in_file = 0
        self._writer.write_table(table)
        self._in_file += len(records)
        self.rows += len(records)
        self.splits.update(r.get("split") or "" for r in records)

    def close(self) -> None:
        """Finish the current Parquet part."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def meta(self) -> dict[str, Any]:
        """Counts and schema for the manifest."""
        return {
            "record_kind": self.kind.name,
            "rows": self.rows,
            "splits": {k or "unsplit": v for k, v in sorted(self.splits.items())},
            "schema": [{"name": f.name, "type": str(f.type)} for f in self.kind.schema],
        }


def resolve(store: Store, ref: str) -> ArtifactInfo:
    """The dataset version `ref` (NAME or NAME:vN)."""
    return store.resolve(ref, KIND)


def record_kind(info: ArtifactInfo) -> RecordKind:
    """The record kind of a dataset version."""
    return get_kind(info.meta["record_kind"])


def parts(info: ArtifactInfo) -> list[Path]:
    """The Parquet files of a dataset version, in order."""
    return sorted((info.path / "data").glob("part-*.parquet"))


def iter_batches(
    info: ArtifactInfo, split: str | None = None, batch_size: int = READ_BATCH
) -> Iterator[list[Record]]:
    """Stream a dataset version's records in batches; `split` keeps only that split."""
    known = info.meta.get("splits", {})
    if split is not None and split not in known:
        raise BadInputError(
            f"dataset {info.ref} has no split {split!r}; splits: {', '.join(known) or 'none'}"
        )
    want = None if split is None else ("" if split == "unsplit" else split)
    for path in parts(info):
        for rb in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
            rows = rb.to_pylist()
            if want is not None:
                rows = [r for r in rows if (r.get("split") or "") == want]
            if rows:
                yield rows


def load_records(info: ArtifactInfo, split: str | None = None) -> list[Record]:
    """All records of a dataset version (or of one split) in memory."""
    return [r for b in iter_batches(info, split) for r in b]


class DatasetDraft:
    """A dataset version being written: `write` records; the result is set when registered."""

    def __init__(self, writer: DatasetWriter, profile: Any) -> None:
        self._writer, self._profile = writer, profile
        self.result: DatasetResult | None = None

    def write(self, records: list[Record]) -> None:
        """Append records to the version (and to its profile)."""
        self._writer.write(records)
        self._profile.add(records)


@contextmanager
def new_dataset(
    store: Store,
    report: DatasetReport,
    *,
    parents: Sequence[ArtifactInfo] = (),
    meta: dict[str, Any] | None = None,
) -> Iterator[DatasetDraft]:
    """Write the next version of dataset `report.name` and register it atomically on exit.

    The body calls `draft.write(records)` and may fill `report` (operators, notes, sources,
    skipped); on exit rows, splits and the profile are filled in, report.json/html and the
    manifest are written and the version registered. If the body raises, nothing is left.
    """
    from luodi.data.profile import Profile

    kind = get_kind(report.record_kind)
    with store.create(KIND, report.name, parents=parents, meta=meta) as folder:
        writer = DatasetWriter(folder.path, kind)
        draft = DatasetDraft(writer, Profile(kind))
        yield draft
        writer.close()
        counts = writer.meta()
        report.rows = counts["rows"]
        report.splits = counts["splits"]
        report.parents = [p.ref for p in parents]
        report.profile = draft._profile.result()
        write_report(folder.path, report)
        folder.meta.update(counts)
        folder.meta.update(
            stage=report.stage,
            sources=[s.model_dump() for s in report.sources],
            skipped=[s.model_dump() for s in report.skipped],
            notes=report.notes,
        )
    info = folder.artifact
    assert info is not None
    draft.result = DatasetResult(
        dataset=info.ref,
        record_kind=kind.name,
        rows=report.rows,
        splits=report.splits,
        path=str(info.path),
        report_html=str(info.path / "report.html"),
        report_json=str(info.path / "report.json"),
        skipped=report.skipped,
        operators=report.operators,
    )


def save_dataset(
    store: Store,
    report: DatasetReport,
    batches: Iterable[list[Record]],
    *,
    parents: Sequence[ArtifactInfo] = (),
    meta: dict[str, Any] | None = None,
) -> DatasetResult:
    """Register `batches` as the next version of dataset `report.name` (see `new_dataset`)."""
    with new_dataset(store, report, parents=parents, meta=meta) as draft:
        for b in batches:
            draft.write(b)
    assert draft.result is not None
    return draft.result
