"""Dataset quality reports: the JSON model saved with every dataset version, and its writer.

`report.json` is the `DatasetReport` below; `report.html` is the same content rendered as a
self-contained page (`report_html.render_html`). `Profile` (profile.py) gathers the
distributions while records stream past, so reports cost no second pass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from luodi.data.pipeline import OpStats


class SourceFile(BaseModel):
    """A file a dataset was made from."""

    path: str = Field(description="Path as given at ingest (absolute).")
    sha256: str = Field(description="sha256 of the file's bytes.")
    format: str = Field(description="Loader used (file suffix).")
    records: int = Field(description="Records taken from the file.")


class Problem(BaseModel):
    """Something rejected at ingest: a whole file, or one row/line of a file."""

    path: str
    reason: str
    location: str | None = Field(default=None, description="Row/line/page; None = whole file.")


class DatasetReport(BaseModel):
    """Everything a reviewer needs to judge a dataset version."""

    name: str = Field(description="Dataset name (the version is in the manifest beside it).")
    stage: str = Field(description="What made this version: ingest, clean, split, balance.")
    record_kind: str
    parents: list[str] = Field(default_factory=list, description="Parent dataset refs.")
    rows: int = 0
    splits: dict[str, int] = Field(default_factory=dict)
    sources: list[SourceFile] = Field(default_factory=list)
    skipped: list[Problem] = Field(
        default_factory=list, description="Files and rows rejected at ingest, with reasons."
    )
    operators: list[OpStats] = Field(default_factory=list, description="Clean: per operator.")
    profile: dict[str, Any] = Field(
        default_factory=dict, description="Distributions: lengths, languages, labels, ..."
    )
    notes: dict[str, Any] = Field(
        default_factory=dict, description="Stage parameters and before/after figures."
    )


class DatasetResult(BaseModel):
    """What a data stage returns: the new version and where its report is."""

    dataset: str = Field(description="The new version, NAME:vN.")
    record_kind: str
    rows: int
    splits: dict[str, int]
    path: str = Field(description="The version's folder.")
    report_html: str
    report_json: str
    skipped: list[Problem] = Field(default_factory=list)
    operators: list[OpStats] = Field(default_factory=list)


def write_report(folder: Path, report: DatasetReport) -> None:
    """Write report.json and report.html into a dataset version folder (before registering)."""
    from luodi.data.report_html import render_html

    (folder / "report.json").write_text(
        json.dumps(report.model_dump(mode="json"), ensure_ascii=False, indent=2), encoding="utf-8"
    )
    (folder / "report.html").write_text(render_html(report), encoding="utf-8")
