"""Headings in PDF text, so that a manual's pages can be cut into sections.

A PDF has no structure a text extractor can rely on, so headings are recognised from two
signals, in this order:

1. Font size. When a document has short lines set larger than its body text (the size most of
   its characters use), those lines are its headings; consecutive lines of one heading size
   are one heading that wrapped. Their level is the rank of their size (largest = 0).
2. Numbering, when no line is set larger. A short line that starts with "第X章" (level 1),
   "第X节" (2), "一、" (3), "（一）" (4), or a decimal number "4", "4.1", "4.1.2" (4 + its
   depth) followed by a title is a heading. Decimal numbers must continue the previous
   heading's numbering (the next sibling at some depth, or a first child), which is what
   keeps a table cell such as "12000 rpm" or a numbered step "3. 松开急停按钮" from
   counting.

Either way a heading is at most `MAX_HEADING` characters, has a letter or CJK character, and
does not end like a sentence (。；，, ...); a numbered step with a full sentence is body text.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

MAX_HEADING = 80
"""Longest text (characters, wrapped lines joined) that can be a heading."""
LARGER = 1.1
"""A line is set larger than the body when its size is at least this times the body's."""

_CJK_NUM = "一二三四五六七八九十百零〇两"
_CHAPTER = re.compile(rf"^第[{_CJK_NUM}\d]+([章节])\s*\S")
_CN_ITEM = re.compile(rf"^[{_CJK_NUM}]+、\s*\S")
_CN_SUB = re.compile(rf"^[（(][{_CJK_NUM}]+[)）]\s*\S")
_DECIMAL = re.compile(r"^(\d{1,2}(?:\.\d{1,2}){0,4})\.?\s+(\S.*)$")
_SENTENCE_END = re.compile(r"[。；，、：,;:！？!?…]$")
_WORDY = re.compile(r"[A-Za-z\u3400-\u9fff\uf900-\ufaff]")
_CJK_EDGE = re.compile(r"[\u3000-\u9fff\uf900-\uffef]")


@dataclass
class Heading:
    """A heading found at `line` (its first line; it covers `lines` lines)."""

    line: int
    lines: int
    level: int
    title: str


def plausible(text: str) -> bool:
    """Whether `text` can be a heading at all: short, wordy, not ending like a sentence."""
    text = text.strip()
    return (
        0 < len(text) <= MAX_HEADING
        and _WORDY.search(text) is not None
        and _SENTENCE_END.search(text) is None
    )


def join_wrapped(parts: Sequence[str]) -> str:
    """Lines of one wrapped heading as one title: joined with a space, except between two
    CJK characters (where the wrap added none)."""
    out = ""
    for part in (p.strip() for p in parts):
        if out and not (_CJK_EDGE.match(out[-1]) and _CJK_EDGE.match(part[:1] or " ")):
            out += " "
        out += part
    return out


def line_sizes(text: str, fragments: Sequence[tuple[str, float]]) -> list[float] | None:
    """The font size of each line of `text` (split at "\\n") from the extractor's fragments
    ((text, size) in output order): the size that covers most of the line's non-space
    characters. None when the fragments do not add up to `text` (sizes would be guesses)."""
    if "".join(t for t, _ in fragments) != text:
        return None
    sizes: list[float] = []
    votes: Counter[float] = Counter()
    for frag, size in fragments:
        pieces = frag.split("\n")
        for i, piece in enumerate(pieces):
            votes[size] += sum(not ch.isspace() for ch in piece)
            if i < len(pieces) - 1:
                sizes.append(votes.most_common(1)[0][0] if votes else 0.0)
                votes = Counter()
    sizes.append(votes.most_common(1)[0][0] if votes else 0.0)
    return sizes


def font_headings(lines: Sequence[str], sizes: Sequence[float]) -> list[Heading]:
    """Headings set in a larger font than the body (see the module docstring); [] when no
    line is."""
    weight: Counter[float] = Counter()
    for line, size in zip(lines, sizes, strict=True):
        weight[size] += len(line.strip())
    if not weight:
        return []
    body = weight.most_common(1)[0][0]
    runs: list[tuple[int, int, float]] = []  # (first line, line count, size)
    for i, size in enumerate(sizes):
        if size < body * LARGER or not lines[i].strip():
            continue
        if runs and runs[-1][0] + runs[-1][1] == i and math.isclose(runs[-1][2], size):
            runs[-1] = (runs[-1][0], runs[-1][1] + 1, size)
        else:
            runs.append((i, 1, size))
    found = []
    for first, count, size in runs:
        title = join_wrapped(lines[first : first + count])
        if plausible(title):
            found.append((first, count, size, title))
    ranks = {s: r for r, s in enumerate(sorted({s for _, _, s, _ in found}, reverse=True))}
    return [Heading(first, count, ranks[size], title) for first, count, size, title in found]


def numbered_headings(lines: Sequence[str]) -> list[Heading]:
    """Headings recognised by their numbering (see the module docstring)."""
    out: list[Heading] = []
    last: tuple[int, ...] | None = None
    for i, raw in enumerate(lines):
        line = " ".join(raw.split())
        if not plausible(line):
            continue
        level = None
        chapter = _CHAPTER.match(line)
        if chapter:
            level = 1 if chapter.group(1) == "章" else 2
        elif _CN_ITEM.match(line):
            level = 3
        elif _CN_SUB.match(line):
            level = 4
        else:
            m = _DECIMAL.match(line)
            if m and _WORDY.match(m.group(2)):
                number = tuple(int(x) for x in m.group(1).split("."))
                if _continues(last, number):
                    last, level = number, 4 + len(number)
        if level is not None:
            out.append(Heading(i, 1, level, line))
    return out


def _continues(last: tuple[int, ...] | None, number: tuple[int, ...]) -> bool:
    """Whether heading `number` can follow heading `last` in one numbering scheme."""
    if last is None:
        return all(x <= 1 for x in number)
    if number == last + (1,):
        return True
    return any(number == last[:i] + (last[i] + 1,) for i in range(len(last)))


def find_headings(
    pages: Sequence[Sequence[str]], sizes: Sequence[Sequence[float] | None]
) -> list[list[Heading]]:
    """Per page, the headings among its lines: by font size when every page's sizes are
    known and some lines are set larger than the body, else by numbering (numbering runs
    across pages)."""
    if sizes and all(s is not None for s in sizes):
        flat_lines = [line for page in pages for line in page]
        flat_sizes = [x for page in sizes for x in page or []]
        found = font_headings(flat_lines, flat_sizes)
        if found:
            return _per_page(pages, found)
    return _per_page(pages, numbered_headings([line for page in pages for line in page]))


def _per_page(pages: Sequence[Sequence[str]], found: list[Heading]) -> list[list[Heading]]:
    """Document-wide headings back to per-page line numbers (a heading that wraps onto the
    next page counts on the page it starts on, covering the lines it has there)."""
    out: list[list[Heading]] = [[] for _ in pages]
    starts = []
    total = 0
    for page in pages:
        starts.append(total)
        total += len(page)
    p = 0
    for h in found:
        while p + 1 < len(pages) and starts[p + 1] <= h.line:
            p += 1
        local = h.line - starts[p]
        out[p].append(Heading(local, min(h.lines, len(pages[p]) - local), h.level, h.title))
    return out


__all__ = [
    "Heading",
    "find_headings",
    "font_headings",
    "join_wrapped",
    "line_sizes",
    "numbered_headings",
    "plausible",
]
