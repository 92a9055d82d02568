"""Word .docx loader (python-docx): heading sections in document order, tables as Markdown."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from luodi.data.loaders.base import FileRejected, Loaded, loader
from luodi.data.loaders.sections import Block, blocks_to_segments, markdown_table
from luodi.data.loaders.util import short_error

OLE_MAGIC = bytes.fromhex("D0CF11E0A1B11AE1")
"""First bytes of an OLE2 compound file (Word 97-2003 .doc, and encrypted Office files)."""

_HEADING_STYLE = re.compile(r"^(?:heading|标题)\s*([1-9])$", re.IGNORECASE)
_TITLE_STYLES = frozenset({"title", "标题"})
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


@loader(".docx")
def load_docx(path: Path) -> Loaded:
    """One segment per heading section, paragraphs and tables in document order.

    Headings are paragraphs whose style (or a style it is based on) is "Heading N" /
    "标题 N", or that carry an outline level; "Title" / "标题" is a level-0 heading above
    all others. Locations are heading paths; heading text is kept as "#" lines and tables
    become Markdown tables (first row as header). Headers, footers, footnotes and comments
    are not read. Corrupt files and OLE files (a renamed .doc, or a password-protected
    document) are rejected.
    """
    with open(path, "rb") as fh:
        if fh.read(8) == OLE_MAGIC:
            raise FileRejected(
                "not a .docx but an OLE file: a Word 97-2003 document named .docx (rename it "
                "to .doc) or a password-protected document (save an unprotected copy)"
            )
    try:
        document = docx.Document(str(path))
        blocks = list(docx_blocks(document))
    except Exception as exc:
        raise FileRejected(f"corrupt .docx: {short_error(exc)}") from None
    return Loaded(segments=blocks_to_segments(blocks))


def docx_blocks(document: Any) -> Iterator[Block]:
    """Heading and body blocks of a python-docx Document's body, in document order."""
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            yield Block(table_markdown(item))
        elif isinstance(item, Paragraph):
            yield Block(item.text, heading_level(item))


def table_markdown(table: Table) -> str:
    """A python-docx table as a Markdown table; merged cells repeat their text per column."""
    return markdown_table([[cell.text for cell in row.cells] for row in table.rows])


def heading_level(paragraph: Paragraph) -> int | None:
    """The heading level of a paragraph (0 for a title), None for body text."""
    level = _outline_level(paragraph._p)
    if level is not None:
        return level
    style = paragraph.style
    for _ in range(10):  # style inheritance chains are short; a cycle must not hang us
        if style is None:
            return None
        name = (style.name or "").strip()
        match = _HEADING_STYLE.match(name)
        if match:
            return int(match.group(1))
        if name.lower() in _TITLE_STYLES:
            return 0
        level = _outline_level(style.element)
        if level is not None:
            return level
        style = style.base_style
    return None


def _outline_level(element: Any) -> int | None:
    # w:outlineLvl 0-8 are heading levels 1-9; 9 means body text.
    found = element.find(f"{_W}pPr/{_W}outlineLvl")
    if found is None:
        return None
    try:
        value = int(found.get(f"{_W}val"))
    except (TypeError, ValueError):
        return None
    return value + 1 if 0 <= value <= 8 else None
