"""Looking at dataset versions: list, show, diff, and export to training formats."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from luodi.data.datasets import KIND, iter_batches, record_kind, resolve
from luodi.data.records import Record, RecordKind, meta_of
from luodi.errors import BadInputError
from luodi.registry import Registry
from luodi.store import ArtifactInfo, Store

EXAMPLES = 5


class DatasetSummary(BaseModel):
    """One dataset version in a listing."""

    dataset: str
    record_kind: str
    stage: str
    rows: int
    splits: dict[str, int]
    parents: list[str]
    created_at: datetime
    created_by: str
    content_hash: str
    path: str


def summary(info: ArtifactInfo) -> DatasetSummary:
    """The listing row of a dataset version."""
    return DatasetSummary(
        dataset=info.ref,
        record_kind=info.meta.get("record_kind", "?"),
        stage=info.meta.get("stage", "?"),
        rows=info.meta.get("rows", 0),
        splits=info.meta.get("splits", {}),
        parents=[p.ref for p in info.parents],
        created_at=info.created_at,
        created_by=info.created_by,
        content_hash=info.content_hash,
        path=str(info.path),
    )


def list_datasets(store: Store, name: str | None = None) -> list[DatasetSummary]:
    """Every dataset version (or every version of `name`), oldest first."""
    return [summary(i) for i in store.list(KIND, name)]


class DatasetDetail(DatasetSummary):
    """A dataset version with its manifest details and report highlights."""

    sources: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    notes: dict[str, Any]
    report_html: str
    operators: list[dict[str, Any]] = Field(default_factory=list)


def show_dataset(store: Store, ref: str) -> DatasetDetail:
    """Everything about one dataset version: counts, sources, skipped inputs, operators."""
    info = resolve(store, ref)
    report_path = info.path / "report.json"
    ops = []
    if report_path.exists():
        ops = json.loads(report_path.read_text(encoding="utf-8")).get("operators", [])
    return DatasetDetail(
        **summary(info).model_dump(),
        sources=info.meta.get("sources", []),
        skipped=info.meta.get("skipped", []),
        notes=info.meta.get("notes", {}),
        report_html=str(info.path / "report.html"),
        operators=[{k: v for k, v in o.items() if k != "examples"} for o in ops],
    )


class DiffResult(BaseModel):
    """How version B differs from version A, by record id and content."""

    a: str
    b: str
    rows_a: int
    rows_b: int
    splits_a: dict[str, int]
    splits_b: dict[str, int]
    schema_added: list[str]
    schema_removed: list[str]
    added: int = Field(description="Records in B whose id is not in A.")
    removed: int = Field(description="Records in A whose id is not in B.")
    changed: int = Field(description="Same id, different content (e.g. cleaned text).")
    resplit: int = Field(description="Same id and content, different split.")
    unchanged: int
    examples: dict[str, list[dict[str, str]]] = Field(
        description="Up to 5 records per change type (id, text excerpt; for changed: before/after)."
    )


def _digest(kind: RecordKind, rec: Record) -> bytes:
    return hashlib.blake2b(kind.content(rec).encode(), digest_size=16).digest()


def diff_datasets(store: Store, ref_a: str, ref_b: str) -> DiffResult:
    """Compare two dataset versions record by record (ids are kept through clean/split)."""
    a, b = resolve(store, ref_a), resolve(store, ref_b)
    ka, kb = record_kind(a), record_kind(b)
    index: dict[str, tuple[bytes, str]] = {}
    for batch in iter_batches(a):
        for r in batch:
            index[r["id"]] = (_digest(ka, r), r.get("split") or "")
    seen: set[str] = set()
    counts = {"added": 0, "changed": 0, "resplit": 0, "unchanged": 0}
    examples: dict[str, list[dict[str, str]]] = {"added": [], "removed": [], "changed": []}
    changed_ids: list[str] = []
    for batch in iter_batches(b):
        for r in batch:
            rid = r["id"]
            old = index.get(rid)
            if old is None:
                counts["added"] += 1
                if len(examples["added"]) < EXAMPLES:
                    examples["added"].append({"id": rid, "text": kb.content(r)[:200]})
                continue
            seen.add(rid)
            if old[0] != _digest(kb, r):
                counts["changed"] += 1
                if len(changed_ids) < EXAMPLES:
                    changed_ids.append(rid)
                    examples["changed"].append({"id": rid, "after": kb.content(r)[:200]})
            elif old[1] != (r.get("split") or ""):
                counts["resplit"] += 1
            else:
                counts["unchanged"] += 1
    removed_ids = [i for i in index if i not in seen]
    want = set(removed_ids[:EXAMPLES]) | set(changed_ids)
    if want:
        for batch in iter_batches(a):
            for r in batch:
                if r["id"] in want:
                    text = ka.content(r)[:200]
                    for ex in examples["changed"]:
                        if ex["id"] == r["id"]:
                            ex["before"] = text
                    if r["id"] in removed_ids[:EXAMPLES]:
                        examples["removed"].append({"id": r["id"], "text": text})
    cols_a = {c["name"] for c in a.meta.get("schema", [])}
    cols_b = {c["name"] for c in b.meta.get("schema", [])}
    return DiffResult(
        a=a.ref,
        b=b.ref,
        rows_a=a.meta.get("rows", 0),
        rows_b=b.meta.get("rows", 0),
        splits_a=a.meta.get("splits", {}),
        splits_b=b.meta.get("splits", {}),
        schema_added=sorted(cols_b - cols_a),
        schema_removed=sorted(cols_a - cols_b),
        removed=len(removed_ids),
        examples=examples,
        **counts,
    )


# -- export ------------------------------------------------------------------------------


def _turns(rec: Record) -> tuple[str, list[dict[str, str]]]:
    msgs = rec.get("messages") or []
    system = "\n".join(m["content"] for m in msgs if m["role"] == "system")
    return system, [m for m in msgs if m["role"] != "system"]


def _alpaca(rec: Record) -> dict[str, Any]:
    system, turns = _turns(rec)
    if len(turns) < 2 or turns[-1]["role"] != "assistant":
        raise ValueError("last turn is not an assistant answer")
    history = [
        [turns[i]["content"], turns[i + 1]["content"]]
        for i in range(0, len(turns) - 2, 2)
        if turns[i]["role"] == "user" and turns[i + 1]["role"] == "assistant"
    ]
    out: dict[str, Any] = {
        "instruction": turns[-2]["content"],
        "input": "",
        "output": turns[-1]["content"],
    }
    if system:
        out["system"] = system
    if history:
        out["history"] = history
    return out


def _sharegpt(rec: Record) -> dict[str, Any]:
    system, turns = _turns(rec)
    names = {"user": "human", "assistant": "gpt", "tool": "observation"}
    out: dict[str, Any] = {
        "conversations": [{"from": names[m["role"]], "value": m["content"]} for m in turns]
    }
    if system:
        out["system"] = system
    return out


def _openai(rec: Record) -> dict[str, Any]:
    return {"messages": [{"role": m["role"], "content": m["content"]} for m in rec["messages"]]}


def _dpo(rec: Record) -> dict[str, Any]:
    return {"prompt": rec["prompt"], "chosen": rec["chosen"], "rejected": rec["rejected"]}


def _jsonl(rec: Record) -> dict[str, Any]:
    return {**rec, "meta": meta_of(rec)}


@dataclass(frozen=True)
class Exporter:
    """An export format: which record kinds it takes and how one record is written."""

    kinds: tuple[str, ...]
    convert: Callable[[Record], dict[str, Any]]


EXPORTERS: Registry[Exporter] = Registry("export format")
EXPORTERS.add("jsonl", Exporter(("text", "qa", "preference", "labeled"), _jsonl))
EXPORTERS.add("alpaca", Exporter(("qa",), _alpaca))
EXPORTERS.add("sharegpt", Exporter(("qa",), _sharegpt))
EXPORTERS.add("openai", Exporter(("qa",), _openai))
EXPORTERS.add("dpo", Exporter(("preference",), _dpo))


class ExportResult(BaseModel):
    """What an export wrote."""

    dataset: str
    format: str
    output: str
    records: int
    skipped: list[dict[str, str]] = Field(description="Records that do not fit the format.")


def _rows(
    exporter: Exporter, info: ArtifactInfo, split: str | None, skipped: list
) -> Iterator[dict]:
    for batch in iter_batches(info, split):
        for r in batch:
            try:
                yield exporter.convert(r)
            except (ValueError, KeyError) as exc:
                skipped.append({"id": r["id"], "reason": str(exc)})


def export_dataset(
    store: Store, ref: str, fmt: str, output: Path, split: str | None = None
) -> ExportResult:
    """Write a dataset version (or one split) as JSON lines in `fmt` to `output`.

    Raises BadInputError when the format does not fit the record kind. The file is written
    beside its destination and renamed, so a failure leaves no partial file.
    """
    info = resolve(store, ref)
    kind = record_kind(info)
    exporter = EXPORTERS.get(fmt)
    if kind.name not in exporter.kinds:
        fits = [n for n in EXPORTERS.names() if kind.name in EXPORTERS.get(n).kinds]
        raise BadInputError(
            f"format {fmt!r} does not fit {kind.name} records; use one of: {', '.join(fits)}"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.part")
    skipped: list[dict[str, str]] = []
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for row in _rows(exporter, info, split, skipped):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(output)
    return ExportResult(
        dataset=info.ref, format=fmt, output=str(output), records=n, skipped=skipped
    )
