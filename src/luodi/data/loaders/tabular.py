"""Table loaders: .csv/.tsv (stdlib csv) and .xlsx (openpyxl); one row dict per data row."""

from __future__ import annotations

import csv
import datetime as dt
import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import openpyxl

from luodi.data.loaders.base import FileRejected, Loaded, Row, loader
from luodi.data.loaders.encoding import read_text
from luodi.data.loaders.util import short_error

# Real exports carry long answers in one cell; the stdlib default (128 KiB) would stop there.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

_SNIFF_CHARS = 64 * 1024
_DELIMITERS = ",;\t|"


def header_names(cells: Sequence[Any]) -> list[str]:
    """Column names from a header row: stripped; blanks become "column N" (1-based) and
    repeats get " (2)", " (3)"... so every name is unique."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for i, cell in enumerate(cells, 1):
        name = "" if cell is None else " ".join(str(cell).split())
        name = name or f"column {i}"
        if name in seen:
            seen[name] += 1
            name = f"{name} ({seen[name]})"
        seen.setdefault(name, 1)
        names.append(name)
    return names


@loader(".csv", ".tsv")
def load_csv(path: Path) -> Loaded:
    """Rows of a delimited file as dicts keyed by the header (its first non-blank record).

    .tsv splits on tabs; .csv sniffs the delimiter among , ; tab | (comma when unsure).
    Location "row N": N is the 1-based number of the data record, header and blank records
    not counted (a quoted field may span several physical lines; the problem reason names the
    physical line). A record whose field count differs from the header's is reported as a
    problem and skipped; the other rows are kept. Values are strings, not stripped.
    """
    text = read_text(path)
    if not text.strip():
        raise FileRejected("empty: no rows")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else _sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    loaded = Loaded()
    header: list[str] | None = None
    n = 0
    try:
        for record in reader:
            if not any(field.strip() for field in record):
                continue
            if header is None:
                header = header_names(record)
                continue
            n += 1
            if len(record) != len(header):
                reason = (
                    f"line {reader.line_num}: {len(record)} fields, the header has {len(header)}"
                )
                loaded.problems.append((f"row {n}", reason))
                continue
            loaded.rows.append(Row(dict(zip(header, record, strict=True)), f"row {n}"))
    except csv.Error as exc:
        # The reader cannot resume after a parse error; what was read so far is kept.
        loaded.problems.append((f"row {n + 1}", f"line {reader.line_num}: {exc}; rest not read"))
    return loaded


def _sniff_delimiter(text: str) -> str:
    sample = text[:_SNIFF_CHARS]
    if len(text) > _SNIFF_CHARS:
        # A cut record would mislead the sniffer about field counts.
        sample = sample[: sample.rfind("\n") + 1] or sample
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        return ","


@loader(".xlsx", ".xlsm")
def load_xlsx(path: Path) -> Loaded:
    """Rows of every non-empty sheet as dicts keyed by the sheet's first non-empty row.

    Location "sheet NAME row N": N is the row number Excel shows (header row included).
    Cells hold the cached value of formulas (None when the file never had them computed);
    dates and times become ISO strings, other values keep their type (str, int, float,
    bool). Fully empty rows are skipped; a row with values outside the header's columns is
    reported as a problem; missing cells are None.
    """
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        raise FileRejected(f"corrupt or unreadable .xlsx: {short_error(exc)}") from exc
    loaded = Loaded()
    try:
        for ws in wb.worksheets:
            # Some writers store a wrong sheet size; without this rows past it are lost.
            ws.reset_dimensions()
            _read_sheet(ws, loaded)
    finally:
        wb.close()
    return loaded


def _read_sheet(ws: Any, loaded: Loaded) -> None:
    header: list[str] | None = None
    lead = 0  # empty columns left of the header (tables often start at B2)
    for n, values in enumerate(ws.iter_rows(values_only=True), 1):
        cells = [_xlsx_value(v) for v in values]
        while cells and cells[-1] is None:
            cells.pop()
        if not cells:
            continue
        if header is None:
            while cells[lead] is None:
                lead += 1
            header = header_names(cells[lead:])
            continue
        where = f"sheet {ws.title} row {n}"
        outside = sum(v is not None for v in cells[:lead] + cells[lead + len(header) :])
        if outside:
            reason = f"{outside} value(s) outside the header's columns"
            loaded.problems.append((where, reason))
            continue
        cells = cells[lead:] + [None] * (len(header) + lead - len(cells))
        loaded.rows.append(Row(dict(zip(header, cells, strict=True)), where))


def _xlsx_value(value: Any) -> Any:
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    return value
