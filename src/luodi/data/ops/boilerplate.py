"""Boilerplate removal: lines repeated across many records (footers, ads, disclaimers).

`drop_boilerplate_lines` is global: `fit` counts, for every normalized line (stripped, digits
replaced by 0, so "第 3 页" and "第 12 页" are one line) no longer than `max_line_chars`, in
how many distinct records it appears; `process` then removes the frequent ones from every
record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import ClassVar

from pydantic import Field, PrivateAttr

from luodi.data.ops.base import Drop, Operator, register
from luodi.data.records import Record

_DIGIT_RE = re.compile(r"\d")
_BLANK_LINES_RE = re.compile("\n{3,}")


def normalize_line(line: str) -> str:
    """The key a line is counted under: stripped, every digit replaced by "0"."""
    return _DIGIT_RE.sub("0", line.strip())


def line_keys(text: str, max_chars: int) -> set[str]:
    """Normalized non-empty lines of `text` of at most `max_chars` characters (stripped)."""
    keys = set()
    for line in text.split("\n"):
        line = line.strip()
        if line and len(line) <= max_chars:
            keys.add(_DIGIT_RE.sub("0", line))
    return keys


MAX_HINTS = 32


def _line_hints(lines: frozenset[str]) -> tuple[str, ...] | None:
    """For each boilerplate line, its longest digit-free piece: a text containing none of
    them cannot contain a boilerplate line, and `in` tests are far cheaper than splitting
    every text into lines. None when there is no usable set (too many lines, or a line made
    only of digits): then every line is checked."""
    if len(lines) > MAX_HINTS:
        return None
    hints = []
    for line in lines:
        piece = max(line.split("0"), key=len)
        if not piece:
            return None
        hints.append(piece)
    return tuple(hints)


def remove_lines(text: str, bp: frozenset[str], hints: tuple[str, ...] | None) -> str:
    """`text` without the lines whose normalized form is in `bp` (their newline goes too);
    `hints` (see `_line_hints`) finds candidate lines without splitting the whole text."""
    # (start, end) of the boilerplate lines, end excluding the newline.
    spans: list[tuple[int, int]] = []
    if hints is None:
        pos = 0
        for line in text.split("\n"):
            end = pos + len(line)
            if normalize_line(line) in bp:
                spans.append((pos, end))
            pos = end + 1
    else:
        found: set[tuple[int, int]] = set()
        for hint in hints:
            i = text.find(hint)
            while i >= 0:
                start = text.rfind("\n", 0, i) + 1
                end = text.find("\n", i)
                end = len(text) if end < 0 else end
                if normalize_line(text[start:end]) in bp:
                    found.add((start, end))
                i = text.find(hint, end)
        spans = sorted(found)
    if not spans:
        return text
    pieces, last = [], 0
    for start, end in spans:
        pieces.append(text[last:start])
        last = end + 1  # the line's newline goes with it
    pieces.append(text[last:])
    out = "".join(pieces)
    if "\n\n\n" in out:
        out = _BLANK_LINES_RE.sub("\n\n", out)
    return out.strip("\n")


@register
class DropBoilerplateLines(Operator):
    """Remove lines that appear in many records (footers, ads, copyright notices)."""

    name: ClassVar[str] = "drop_boilerplate_lines"
    is_global: ClassVar[bool] = True

    min_docs: int = Field(
        default=3,
        ge=2,
        description="A line is boilerplate only if it appears in at least this many records.",
    )
    min_fraction: float = Field(
        default=0.3,
        gt=0.0,
        le=1.0,
        description="...and in at least this fraction of all records (a footer on most "
        "documents, not a phrase a few documents happen to share).",
    )
    max_line_chars: int = Field(
        default=200,
        ge=1,
        description="Lines longer than this are content, never boilerplate.",
    )

    _lines: frozenset[str] = PrivateAttr(default_factory=frozenset)
    _hints: tuple[str, ...] | None = PrivateAttr(default=None)

    @property
    def boilerplate(self) -> frozenset[str]:
        """The normalized lines `fit` found to be boilerplate."""
        return self._lines

    def fit(self, batches: Iterable[list[Record]]) -> None:
        """Count distinct records per normalized line; keep the frequent short ones."""
        # Keyed by the line's hash so memory is one small int per distinct line; the text is
        # kept only for lines already seen in min_docs records (the candidates).
        counts: dict[int, int] = {}
        candidates: dict[int, str] = {}
        limit, min_docs = self.max_line_chars, self.min_docs
        n = 0
        texts_of = self.kind.texts  # bound once: `kind` is a pydantic private attr
        for batch in batches:
            for rec in batch:
                n += 1
                seen: set[str] = set()
                for text in texts_of(rec):
                    if text:
                        seen |= line_keys(text, limit)
                for line in seen:
                    h = hash(line)
                    c = counts.get(h, 0) + 1
                    counts[h] = c
                    if c == min_docs:
                        candidates[h] = line
        need = max(min_docs, self.min_fraction * n)
        self._lines = frozenset(line for h, line in candidates.items() if counts[h] >= need)
        self._hints = _line_hints(self._lines)

    def process(self, batch: list[Record]) -> list[Record | Drop]:
        """Each record without its boilerplate lines; Drop empty_after_boilerplate when
        nothing else was left."""
        if not self._lines:
            return list(batch)
        bp, hints, kind = self._lines, self._hints, self.kind

        def clean(text: str) -> str:
            return remove_lines(text, bp, hints)

        out: list[Record | Drop] = []
        for rec in batch:
            if hints is not None and not any(h in t for t in kind.texts(rec) for h in hints):
                out.append(rec)
                continue
            new = kind.map_texts(rec, clean)
            if new is not rec and not kind.content(new).strip():
                out.append(Drop("empty_after_boilerplate", "every line was boilerplate"))
            else:
                out.append(new)
        return out
