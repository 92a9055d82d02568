"""The demo's data stage: every sample folder is ingested as its record kind (bad files
included, to show they are reported and skipped), cleaned with the company's recipes
(examples/recipes: PII masked except the public hotline and mailbox), and split; the labeled
tickets are balanced."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

from luodi.data.balance import BalanceConfig, run_balance
from luodi.data.clean import CleanConfig, run_clean
from luodi.data.ingest import IngestConfig, run_ingest
from luodi.data.split import SplitConfig, run_split
from luodi.errors import NotFoundError
from luodi.progress import Progress, no_progress
from luodi.store import Store


class DemoStep(BaseModel):
    """One dataset the demo made: raw → clean (→ split/balance) figures and the report."""

    dataset: str = Field(description="Final version made for this sample set.")
    record_kind: str
    files: int = Field(description="Files ingested.")
    skipped_files: int = Field(description="Files rejected, with reasons in the report.")
    skipped_rows: int = Field(description="Rows rejected (malformed, missing fields, ...).")
    raw_rows: int
    clean_rows: int
    pii_masked: int = Field(description="Records whose PII was masked.")
    splits: dict[str, int]
    report_html: str = Field(description="The clean version's quality report.")


# (folder under examples/xinghe, record kind, dataset name, split method, split field)
SAMPLES: list[tuple[list[str], str, str, str, str | None]] = [
    (["handbook", "manuals", "corpus", "bad"], "text", "xinghe-docs", "random", None),
    (["faq"], "qa", "xinghe-faq", "stratified", "category"),
    (["feedback"], "preference", "xinghe-feedback", "random", None),
    (["tickets"], "labeled", "xinghe-tickets", "stratified", "label"),
]


def examples_dir() -> Path:
    """The sample data: $LUODI_EXAMPLES, the source checkout's examples/, or ./examples."""
    candidates = [
        Path(os.environ["LUODI_EXAMPLES"]) if os.environ.get("LUODI_EXAMPLES") else None,
        Path(__file__).resolve().parents[2] / "examples",
        Path.cwd() / "examples",
    ]
    for c in candidates:
        if c is not None and (c / "xinghe").is_dir():
            return c
    raise NotFoundError("sample data not found: set LUODI_EXAMPLES to the examples/ folder")


def run_data(store: Store, root: Path, progress: Progress = no_progress) -> list[DemoStep]:
    """Ingest, clean and split every sample set (the labeled tickets are also balanced)."""
    steps: list[DemoStep] = []
    for folders, kind, name, method, by in SAMPLES:
        raw = run_ingest(
            store,
            IngestConfig(paths=[root / "xinghe" / f for f in folders], kind=kind, name=name),
            progress,
        )
        recipe = root / "recipes" / f"{kind}.yaml"
        clean = run_clean(
            store,
            CleanConfig(dataset=raw.dataset, recipe=recipe if recipe.exists() else None),
            progress,
        )
        final = run_split(
            store,
            SplitConfig(dataset=clean.dataset, method=method, by=by, ratios=[0.8, 0.1, 0.1]),
            progress,
        )
        if kind == "labeled":
            final = run_balance(
                store, BalanceConfig(dataset=final.dataset, strategy="oversample"), progress
            )
        files = {p.path for p in raw.skipped if p.location is None}
        steps.append(
            DemoStep(
                dataset=final.dataset,
                record_kind=kind,
                files=len(store.resolve(raw.dataset, "dataset").meta["sources"]),
                skipped_files=len(files),
                skipped_rows=sum(1 for p in raw.skipped if p.location is not None),
                raw_rows=raw.rows,
                clean_rows=clean.rows,
                pii_masked=sum(s.modified for s in clean.operators if s.op == "pii_mask"),
                splits=final.splits,
                report_html=clean.report_html,
            )
        )
    return steps
