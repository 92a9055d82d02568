"""What loaders return, the loader registry (by file suffix), and shared text decoding.

A loader turns one file into either `segments` (documents: text with a location such as a
page or a heading path) or `rows` (structured files: a dict per row/line/object with its
location), plus `problems` for rows it had to skip. A file that cannot be used at all raises
`FileRejected` with the reason (corrupt, encrypted, empty, unsupported...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from luodi.errors import BadInputError
from luodi.registry import Registry


class FileRejected(BadInputError):
    """A whole file cannot be ingested; the message is the reason shown to the user."""


@dataclass
class Segment:
    """A piece of a document's text with where it came from ("page 3", "1 总则 > 1.2 范围")."""

    text: str
    location: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Row:
    """One row/object of a structured file with where it came from ("row 5", "line 12")."""

    data: dict[str, Any]
    location: str


@dataclass
class Loaded:
    """A loaded file: document segments or structured rows, plus rows it skipped and why."""

    segments: list[Segment] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    """(location, reason) of each row/line skipped."""


Loader = Callable[[Path], Loaded]
LOADERS: Registry[Loader] = Registry("file format")


def loader(*suffixes: str) -> Callable[[Loader], Loader]:
    """Register a loader function for file suffixes (lower case, with the dot)."""
    return LOADERS.register(*suffixes)
