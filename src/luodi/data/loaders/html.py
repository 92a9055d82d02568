"""HTML loader: visible text with headings kept as structure, one segment per heading section."""

from __future__ import annotations

import re
from pathlib import Path

from bs4 import BeautifulSoup, Comment, Declaration, Doctype, ProcessingInstruction, Tag
from bs4.element import NavigableString

from luodi.data.loaders.base import Loaded, loader
from luodi.data.loaders.encoding import read_text
from luodi.data.loaders.sections import Block, blocks_to_segments, markdown_table

# Not text a reader sees, or page chrome repeated on every page of a site.
_DROP = frozenset(
    {"script", "style", "nav", "footer", "noscript", "template", "head", "iframe", "svg"}
    | {"canvas", "object", "embed", "button", "select", "input", "textarea", "map"}
)
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BLOCKS = frozenset(
    {"p", "div", "section", "article", "main", "header", "aside", "blockquote", "ul", "ol"}
    | {"dl", "dt", "dd", "figure", "figcaption", "address", "hr", "form", "fieldset", "body"}
    | {"details", "summary", "caption", "center", "html"}
)
_SPACES = re.compile(r"\s+")
_SKIPPED_STRINGS = (Comment, Declaration, Doctype, ProcessingInstruction)


@loader(".html", ".htm")
def load_html(path: Path) -> Loaded:
    """Segments by heading section (h1-h6), like Markdown; scripts, styles, nav and footers
    are dropped, tables become Markdown tables, list items "- " lines."""
    return Loaded(segments=blocks_to_segments(html_blocks(read_text(path))))


def html_blocks(markup: str) -> list[Block]:
    """The heading and body blocks of an HTML document, in document order."""
    soup = BeautifulSoup(markup, "lxml")
    walker = _Walker()
    walker.walk(soup)
    walker.flush()
    return walker.blocks


class _Walker:
    """Collects blocks while walking the tree; inline text accumulates until a block ends."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.inline: list[str] = []

    def flush(self) -> None:
        text = "".join(self.inline)
        self.inline = []
        lines = [" ".join(line.split()) for line in text.split("\n")]
        body = "\n".join(line for line in lines if line)
        if body:
            self.blocks.append(Block(body))

    def walk(self, node: Tag) -> None:
        for child in node.children:
            if isinstance(child, NavigableString):
                if not isinstance(child, _SKIPPED_STRINGS):
                    # Source line breaks are just spaces in HTML; only <br> breaks a line.
                    self.inline.append(_SPACES.sub(" ", str(child)))
                continue
            if not isinstance(child, Tag):
                continue
            name = child.name.lower() if child.name else ""
            if name in _DROP:
                continue
            if name in _HEADINGS:
                self.flush()
                self.blocks.append(Block(child.get_text(" ", strip=True), _HEADINGS[name]))
            elif name == "table":
                self.flush()
                self.blocks.append(Block(_table(child)))
            elif name == "pre":
                self.flush()
                self.blocks.append(Block(child.get_text().strip("\n")))
            elif name == "br":
                self.inline.append("\n")
            elif name == "li":
                self.flush()
                # Paragraphs or nested lists inside an item stay lines of that one item.
                item = _Walker()
                item.walk(child)
                item.flush()
                text = "\n".join(block.text for block in item.blocks)
                if text:
                    self.blocks.append(Block("- " + text))
            elif name in _BLOCKS:
                self.flush()
                self.walk(child)
                self.flush()
            else:
                self.walk(child)


def _table(table: Tag) -> str:
    rows = []
    for tr in table.find_all("tr"):
        # Rows of a nested table belong to that table's cell text, not to this table.
        if tr.find_parent("table") is not table:
            continue
        cells = [c.get_text(" ", strip=True) for c in tr.find_all(("td", "th"), recursive=False)]
        rows.append(cells)
    return markdown_table(rows)
