"""File loaders of the data stage: `load_file(path)` turns any supported file into a `Loaded`.

Importing this package registers every loader in `LOADERS` (by lower-case file suffix).
"""

from __future__ import annotations

from pathlib import Path

from luodi.data.loaders import doc, docx, html, jsonfile, pdf, tabular, text  # noqa: F401
from luodi.data.loaders.base import LOADERS, FileRejected, Loaded, Row, Segment, loader
from luodi.data.loaders.encoding import decode_bytes, read_text
from luodi.data.loaders.util import short_error
from luodi.errors import LuodiError

SUPPORTED_SUFFIXES: list[str] = LOADERS.names()
"""Every suffix with a loader, sorted (".csv", ".doc", ...)."""

__all__ = [
    "LOADERS",
    "SUPPORTED_SUFFIXES",
    "FileRejected",
    "Loaded",
    "Row",
    "Segment",
    "decode_bytes",
    "load_file",
    "loader",
    "read_text",
]


def load_file(path: Path) -> Loaded:
    """Load one file with the loader registered for its lower-cased suffix.

    Never lets a bad file escape as anything but FileRejected (a BadInputError) whose message
    is the reason: unsupported suffix (naming the supported ones), unreadable or missing
    file, empty file (0 bytes, or no text/rows at all: "empty ..."), a file whose every row
    was skipped (naming the first problem), or any failure of a third-party parser (a short
    "could not read ..." reason). Other LuodiErrors pass through unchanged.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in LOADERS:
        shown = suffix or "(no suffix)"
        raise FileRejected(
            f"unsupported file type {shown}; supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise FileRejected(f"cannot read the file: {exc.strerror or exc}") from None
    if size == 0:
        raise FileRejected("empty file (0 bytes)")
    try:
        loaded = LOADERS.get(suffix)(path)
    except LuodiError:
        raise
    except (MemoryError, RecursionError) as exc:
        raise FileRejected(f"too large or too deeply nested to read: {short_error(exc)}") from None
    except Exception as exc:
        raise FileRejected(f"could not read this {suffix} file: {short_error(exc)}") from None
    if not loaded.segments and not loaded.rows:
        if loaded.problems:
            where, why = loaded.problems[0]
            raise FileRejected(
                f"no usable content: {len(loaded.problems)} part(s) skipped, first at {where}: "
                f"{why}"
            )
        raise FileRejected("empty: no text or rows")
    return loaded
