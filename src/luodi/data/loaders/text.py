"""Plain text (.txt) and Markdown (.md) loaders."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from luodi.data.loaders.base import Loaded, loader
from luodi.data.loaders.encoding import read_text
from luodi.data.loaders.sections import Block, blocks_to_segments, split_plain

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
# Lines that cannot be the title of a setext heading (so "---" under them is a rule).
_NOT_SETEXT_TITLE = re.compile(r"^ {0,3}([-*+>|]|\d+[.)] |#)")


@loader(".txt")
def load_txt(path: Path) -> Loaded:
    """One segment "whole file", or, past ~4000 characters, segments "lines A-B" split at
    blank lines (see `sections.split_plain`)."""
    return Loaded(segments=split_plain(read_text(path)))


@loader(".md", ".markdown")
def load_markdown(path: Path) -> Loaded:
    """One segment per heading section, located by heading path, headings kept as "#" lines.

    ATX ("## 2 安装") and setext (title underlined by "===" or "---") headings count; lines
    inside fenced code blocks never do. See `sections.blocks_to_segments` for the rules.
    """
    return Loaded(segments=blocks_to_segments(markdown_blocks(read_text(path))))


def markdown_blocks(text: str) -> Iterator[Block]:
    """Split Markdown `text` into heading blocks and body paragraphs (blank-line separated).

    Fenced code blocks stay whole in one body block, blank lines included.
    """
    para: list[str] = []
    fence: str | None = None
    for line in text.split("\n"):
        if fence is not None:
            para.append(line)
            if line.strip().startswith(fence):
                fence = None
            continue
        opened = _FENCE.match(line)
        if opened:
            fence = opened.group(1)[0] * len(opened.group(1))
            para.append(line)
            continue
        atx = _ATX.match(line)
        if atx and atx.group(2):
            if para:
                yield Block("\n".join(para))
                para = []
            yield Block(atx.group(2).strip(), len(atx.group(1)))
            continue
        underline = _SETEXT.match(line)
        if underline and len(para) == 1 and not _NOT_SETEXT_TITLE.match(para[0]):
            yield Block(para[0].strip(), 1 if underline.group(1)[0] == "=" else 2)
            para = []
            continue
        if line.strip():
            para.append(line.rstrip())
        elif para:
            yield Block("\n".join(para))
            para = []
    if para:
        yield Block("\n".join(para))
