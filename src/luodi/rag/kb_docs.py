"""Documents into knowledge bases: finding the files, reading them with the data stage's
loaders, and cleaning their text the way the data stage cleans a text corpus.

Cleaning is the data stage's own text functions (Unicode normal form, control characters,
HTML, whitespace), then PII masking (`luodi.data.ops.pii.mask_pii`) unless a knowledge base
turns it off: what is masked here is never chunked, embedded, stored nor shown in an answer.
Structured files (csv, xlsx, json...) become one segment per row, "column: value" per line,
so an FAQ sheet is searchable row by row.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from luodi.data.loaders import FileRejected, Loaded, Segment, load_file
from luodi.data.loaders.util import short_error
from luodi.data.ops.normalize import (
    normalize_unicode_text,
    normalize_whitespace_text,
    remove_control_chars_text,
    strip_html_text,
)
from luodi.data.ops.pii import mask_pii
from luodi.errors import LuodiError, NotFoundError
from luodi.store.hashing import sha256_file


@dataclass(frozen=True)
class SourceFile:
    """A file to add: where to read it, the name it will be cited by, and the path that
    lineage records (the file itself, or `upload:KEY/NAME` for an API upload)."""

    path: Path
    source: str
    recorded: str


@dataclass
class ReadDoc:
    """A file read and cleaned: its segments, hash and what cleaning did."""

    segments: list[Segment]
    sha256: str
    format: str
    chars: int
    pii: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


def doc_id_of(source: str) -> str:
    """The document id of a source name: stable across versions of the file, so an updated
    file keeps its id and its unchanged chunks keep their ids (and vectors)."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def walk(paths: Iterable[Path]) -> Iterator[SourceFile]:
    """Every file under `paths`: a file is cited by its name, a file found in a folder by its
    path under that folder ("policies/leave.md"); hidden files and folders are skipped.
    NotFoundError for a path that does not exist."""
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise NotFoundError(f"{p} does not exist")
        if p.is_dir():
            for q in sorted(p.rglob("*")):
                rel = q.relative_to(p)
                if q.is_file() and not any(part.startswith(".") for part in rel.parts):
                    yield SourceFile(q, rel.as_posix(), str(q.resolve()))
        else:
            yield SourceFile(p, p.name, str(p.resolve()))


def clean_text(text: str) -> str:
    """The data stage's normalizing chain for text: NFKC (CJK punctuation kept), control and
    zero-width characters removed, HTML stripped, whitespace collapsed."""
    text = normalize_unicode_text(text)
    text = remove_control_chars_text(text)
    text = strip_html_text(text)
    return normalize_whitespace_text(text)


def _row_text(data: dict[str, Any]) -> str:
    parts = []
    for k, v in data.items():
        if v is None or (isinstance(v, float) and v != v) or str(v).strip() == "":
            continue
        parts.append(f"{k}: {v}")
    return "\n".join(parts)


def _segments(loaded: Loaded) -> list[Segment]:
    rows = [Segment(_row_text(r.data), r.location) for r in loaded.rows]
    return [*loaded.segments, *rows]


def read_document(path: Path, pii_mask: bool, allow: Iterable[str] = ()) -> ReadDoc:
    """Load `path` with the loader of its suffix and clean every segment.

    FileRejected (a BadInputError) with the reason when the file cannot be used: unsupported,
    unreadable, corrupt, encrypted, empty, or no text left after cleaning; a third-party
    parser's failure becomes one too. Rows or parts the loader skipped are in `problems`.
    """
    try:
        loaded = load_file(path)
        sha = sha256_file(path)
    except LuodiError:
        raise
    except Exception as exc:  # a loader's library failing on a hostile file
        raise FileRejected(f"unreadable: {short_error(exc)}") from None
    allow = tuple(allow)
    pii: Counter[str] = Counter()
    out: list[Segment] = []
    for seg in _segments(loaded):
        text = clean_text(seg.text)
        location = seg.location
        if pii_mask:
            text, counts = mask_pii(text, allow)
            location, loc_counts = mask_pii(location, allow)
            pii.update(counts)
            pii.update(loc_counts)
        if text:
            out.append(Segment(text, location, dict(seg.meta)))
    if not out:
        raise FileRejected("no text left after cleaning")
    return ReadDoc(
        segments=out,
        sha256=sha,
        format=path.suffix.lower(),
        chars=sum(len(s.text) for s in out),
        pii=pii,
        problems=[f"{where}: {why}" for where, why in loaded.problems],
    )
