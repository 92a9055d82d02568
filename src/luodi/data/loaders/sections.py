"""Shared shaping of document text into segments: plain-text packing, heading sections, tables.

Plain text (.txt, .doc) is packed paragraph by paragraph into segments of about `MAX_CHARS`
located by line range. Structured documents (.md, .html, .docx) become a stream of blocks,
each either a heading (level >= 0) or body text (level None); `blocks_to_segments` turns that
into one segment per heading section, located by its heading path ("产品手册 > 2 安装").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from luodi.data.loaders.base import Segment

MAX_CHARS = 4000
"""Target upper size of a segment; longer sections are split at paragraph/line boundaries."""

BEFORE_FIRST_HEADING = "before first heading"
"""Location of the text that precedes a document's first heading."""


@dataclass
class Block:
    """A heading (`level` 0-9, 0 = document title) or a body paragraph/table (`level` None)."""

    text: str
    level: int | None = None


def split_plain(text: str, max_chars: int = MAX_CHARS) -> list[Segment]:
    """Pack `text` into segments of at most ~`max_chars` at blank-line (paragraph) boundaries.

    Text that fits is one segment located "whole file". Otherwise each segment is located by
    its 1-based line range "lines A-B" ("line A" for one line); a paragraph longer than the
    limit is split at line boundaries and a line longer than the limit is cut into pieces.
    Paragraphs inside a segment are separated by one blank line. Blank text gives no segments.
    """
    stripped = text.strip()
    if not stripped:
        return []
    if len(stripped) <= max_chars:
        return [Segment(stripped, "whole file")]
    out: list[Segment] = []
    chunk: list[str] = []
    size = 0
    first = last = 0

    def flush() -> None:
        nonlocal chunk, size
        if chunk:
            where = f"line {first}" if first == last else f"lines {first}-{last}"
            out.append(Segment("\n\n".join(chunk), where))
        chunk, size = [], 0

    for start, end, para in _paragraphs(text.split("\n")):
        if size and size + len(para) + 2 > max_chars:
            flush()
        if len(para) <= max_chars:
            if not chunk:
                first = start
            chunk.append(para)
            size += len(para) + 2
            last = end
            continue
        # An over-long paragraph: pack its lines on their own.
        flush()
        for lineno, line in enumerate(para.split("\n"), start):
            if size and size + len(line) + 1 > max_chars:
                flush()
            if len(line) > max_chars:
                flush()
                for k in range(0, len(line), max_chars):
                    out.append(Segment(line[k : k + max_chars], f"line {lineno}"))
                continue
            if not chunk:
                first, chunk = lineno, [line]
            else:
                chunk[-1] += "\n" + line
            size += len(line) + 1
            last = lineno
        flush()
    flush()
    return out


def _paragraphs(lines: list[str]) -> Iterable[tuple[int, int, str]]:
    """(first line, last line, text) of each run of non-blank lines; line numbers 1-based."""
    start = 0
    buf: list[str] = []
    for i, line in enumerate(lines, 1):
        if line.strip():
            if not buf:
                start = i
            buf.append(line.rstrip())
        elif buf:
            yield start, i - 1, "\n".join(buf)
            buf = []
    if buf:
        yield start, len(lines), "\n".join(buf)


def heading_line(level: int, title: str) -> str:
    """The Markdown line for a heading: "#" repeated `level` times (at least once) + title."""
    return "#" * max(level, 1) + " " + title


def blocks_to_segments(blocks: Iterable[Block], max_chars: int = MAX_CHARS) -> list[Segment]:
    """One segment per heading section of `blocks`, in document order.

    A section is a heading and the body blocks up to the next heading; its text starts with
    the heading as a Markdown line and its location is the path of headings above and
    including it, joined by " > ". A heading closes every open heading of the same or a deeper
    level. Sections without body text are dropped (their title lives on in the locations of
    their subsections). Body before the first heading is located "before first heading".
    A section longer than `max_chars` is split at block boundaries, each part repeating the
    heading line. Each segment's meta has "heading_level" (None before the first heading).
    """
    path: list[tuple[int, str]] = []
    body: list[str] = []
    out: list[Segment] = []

    def flush() -> None:
        if not body:
            return
        location = " > ".join(title for _, title in path) or BEFORE_FIRST_HEADING
        level = path[-1][0] if path else None
        head = heading_line(level, path[-1][1]) if path else ""
        for part in _pack(body, max(max_chars - len(head), max_chars // 2)):
            text = f"{head}\n\n{part}" if head else part
            out.append(Segment(text, location, {"heading_level": level}))
        body.clear()

    for block in blocks:
        text = block.text.strip()
        if not text:
            continue
        if block.level is None:
            body.append(text)
            continue
        flush()
        while path and path[-1][0] >= block.level:
            path.pop()
        path.append((block.level, " ".join(text.split())))
    flush()
    return out


def _pack(parts: Sequence[str], max_chars: int) -> list[str]:
    """Join `parts` with blank lines into strings of about `max_chars`; big parts are split."""
    out: list[str] = []
    cur: list[str] = []
    size = 0
    for part in parts:
        pieces = (
            [part] if len(part) <= max_chars else [s.text for s in split_plain(part, max_chars)]
        )
        for piece in pieces:
            if cur and size + len(piece) + 2 > max_chars:
                out.append("\n\n".join(cur))
                cur, size = [], 0
            cur.append(piece)
            size += len(piece) + 2
    if cur:
        out.append("\n\n".join(cur))
    return out


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    """Render `rows` (first row = header) as a Markdown table; ragged rows are padded.

    Cell text has newlines turned into "<br>" and "|" escaped so each row stays one line.
    The separator row is "|---|---|..." (one "---" per column). No rows gives "".
    """
    rows = [[_cell(c) for c in row] for row in rows if any(str(c).strip() for c in row)]
    if not rows:
        return ""
    width = max(len(r) for r in rows)
    lines = []
    for i, row in enumerate(rows):
        cells = list(row) + [""] * (width - len(row))
        lines.append("| " + " | ".join(cells) + " |")
        if i == 0:
            lines.append("|" + "---|" * width)
    return "\n".join(lines)


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    text = "<br>".join(" ".join(line.split()) for line in text.strip().splitlines())
    return text.replace("|", "\\|")
