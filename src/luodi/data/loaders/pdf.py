"""PDF loader (pypdf): page text in sections, running headers and footers removed."""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pypdf import PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

from luodi.data.loaders.base import FileRejected, Loaded, Segment, loader
from luodi.data.loaders.pdf_headings import Heading, find_headings, line_sizes
from luodi.data.loaders.util import short_error

_EDGE_LINES = 3
"""How many lines from the top and from the bottom of a page may be header/footer."""
_MIN_PAGES = 3
_DIGITS = re.compile(r"\d+")


@loader(".pdf")
def load_pdf(path: Path) -> Loaded:
    """Text of each page in content order, cut at headings, located "page N".

    Headings are found by font size or numbering (luodi.data.loaders.pdf_headings). A page
    is one segment per heading section on it (the segment starts at its heading line); each
    segment's meta has "page" and, once a heading has been seen, "section": the path of open
    headings ("4 操作 > 4.1 开机与回零"), which carries over to the next page until the next
    heading. A PDF without recognisable headings gives one segment per page and no section.

    Header/footer lines are removed: a line among the first or last three of a page that
    appears at the same edge position on at least half of the pages (and at least 3 pages),
    either verbatim or with a number that follows the page number ("第 3 页" on page 3,
    "第 4 页" on page 4). Rejects (FileRejected)
    encrypted files that do not open with an empty password, corrupt or truncated files, and
    files without any extractable text (scanned images; OCR is not supported). A page whose
    text extraction fails is reported as a problem and the others are kept.
    """
    with _quiet_pypdf():
        try:
            reader = PdfReader(path)
            _open_encrypted(reader)
            count = len(reader.pages)
        except FileRejected:
            raise
        except Exception as exc:
            raise FileRejected(f"corrupt or truncated PDF: {short_error(exc)}") from None
        loaded = Loaded()
        pages: list[tuple[int, list[str]]] = []
        page_sizes: list[list[float] | None] = []
        for number in range(1, count + 1):
            try:
                text, sizes = _page_text(reader, number - 1)
            except Exception as exc:
                loaded.problems.append(
                    (f"page {number}", f"text extraction failed: {short_error(exc)}")
                )
                continue
            raw = text.split("\n")
            kept = [i for i, line in enumerate(raw) if line.strip()]
            if kept:
                pages.append((number, [" ".join(raw[i].split()) for i in kept]))
                page_sizes.append([sizes[i] for i in kept] if sizes is not None else None)
    if not pages:
        if count == 0:
            raise FileRejected("PDF has no pages")
        if loaded.problems:
            raise FileRejected(f"no page text could be extracted ({loaded.problems[0][1]})")
        raise FileRejected("PDF has no text layer (scanned images?); OCR is not supported")
    cuts = running_cuts(pages, count)
    pages = [(n, lines[a : len(lines) - b]) for (n, lines), (a, b) in zip(pages, cuts, strict=True)]
    page_sizes = [
        s[a : len(s) - b] if s is not None else None
        for s, (a, b) in zip(page_sizes, cuts, strict=True)
    ]
    headings = find_headings([lines for _, lines in pages], page_sizes)
    loaded.segments.extend(_sections(pages, headings))
    return loaded


def _page_text(reader: PdfReader, index: int) -> tuple[str, list[float] | None]:
    """A page's extracted text and the font size of each of its lines (None when unknown)."""
    fragments: list[tuple[str, float]] = []
    broken = False

    def visit(text: str, cm: list[float], tm: list[float], font: object, size: float) -> None:
        nonlocal broken
        # The size on the page is the font size scaled by the text and current matrices. An
        # odd operand must not cost the page its text: sizes are then just unknown.
        try:
            c = tm[2] * cm[0] + tm[3] * cm[2]
            d = tm[2] * cm[1] + tm[3] * cm[3]
            fragments.append((text, round(float(size) * math.hypot(c, d), 1)))
        except Exception:
            broken = True

    text = reader.pages[index].extract_text(visitor_text=visit) or ""
    return text, None if broken else line_sizes(text, fragments)


def _sections(pages: list[tuple[int, list[str]]], headings: list[list[Heading]]) -> list[Segment]:
    """Each page's lines cut at its headings into segments with page and section meta.

    A run that is only a heading (the next heading, or the page end, follows at once) is left
    out: its title lives on in the section path of what follows, and alone it would make a
    chunk with nothing to retrieve. A document of nothing but headings keeps them all.
    """
    out: list[Segment] = []
    path: list[tuple[int, str]] = []

    def emit(number: int, lines: list[str], head: int) -> None:
        if len(lines) > head:
            meta: dict[str, object] = {"page": number}
            if path:
                meta["section"] = " > ".join(title for _, title in path)
            out.append(Segment("\n".join(lines), f"page {number}", meta))

    for (number, lines), found in zip(pages, headings, strict=True):
        start = head = 0
        for h in found:
            emit(number, lines[start : h.line], head)
            while path and path[-1][0] >= h.level:
                path.pop()
            path.append((h.level, h.title))
            start, head = h.line, h.lines
        emit(number, lines[start:], head)
    if not out:
        return [Segment("\n".join(lines), f"page {n}", {"page": n}) for n, lines in pages]
    return out


@contextmanager
def _quiet_pypdf() -> Iterator[None]:
    # pypdf logs every recoverable oddity of real-world files as a warning; the outcome that
    # matters (rejection or problems) is reported through the return value instead.
    log = logging.getLogger("pypdf")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _open_encrypted(reader: PdfReader) -> None:
    if not reader.is_encrypted:
        return
    try:
        opened = reader.decrypt("")
    except DependencyError:
        raise FileRejected(
            "encrypted PDF (AES): checking for an empty password needs the 'cryptography' "
            "package (pip install cryptography), or save an unprotected copy"
        ) from None
    except (FileNotDecryptedError, PdfReadError, NotImplementedError) as exc:
        raise FileRejected(f"encrypted PDF that cannot be opened: {short_error(exc)}") from None
    if not opened:
        raise FileRejected("encrypted PDF: it needs a password; save an unprotected copy")


def _keys(line: str, page: int) -> list[tuple[str, str, int]]:
    """What makes `line` the same running line on another page: the exact text, or the text
    with one number that moves in step with the page number (offset kept: "第 3 页" on page 3
    and "第 4 页" on page 4 share ("第 # 页", 0); "Page 1 of 9" printed on page 2 gives -1)."""
    keys = [("=", line, 0)]
    runs = list(_DIGITS.finditer(line))
    for run in runs[:4]:
        shape = line[: run.start()] + "#" + line[run.end() :]
        keys.append(("#", shape, int(run.group()[:9]) - page))
    return keys


def strip_running_lines(
    pages: list[tuple[int, list[str]]], total_pages: int
) -> list[tuple[int, list[str]]]:
    """`pages` ((page number, lines)) with running header and footer lines removed (see
    `running_cuts`)."""
    cuts = running_cuts(pages, total_pages)
    return [
        (number, lines[a : len(lines) - b])
        for (number, lines), (a, b) in zip(pages, cuts, strict=True)
    ]


def running_cuts(pages: list[tuple[int, list[str]]], total_pages: int) -> list[tuple[int, int]]:
    """Per page of `pages` ((page number, lines)), how many lines at the top and at the
    bottom are running header and footer lines.

    Edge positions are examined from the outside in: position k from the top counts only on
    pages whose first k lines were all removed, so a header is peeled off line by line and
    body text under a non-repeating line is never touched. The threshold is half of
    `total_pages` (pages without text count too), and at least 3.
    """
    top = [0] * len(pages)
    bottom = [0] * len(pages)
    if total_pages < _MIN_PAGES:
        return list(zip(top, bottom, strict=True))
    need = max(_MIN_PAGES, math.ceil(total_pages / 2))
    for from_top in (True, False):
        cut = top if from_top else bottom
        for k in range(_EDGE_LINES):
            keys: dict[int, list[tuple[str, str, int]]] = {}
            for i, (number, lines) in enumerate(pages):
                left = len(lines) - top[i] - bottom[i]
                if cut[i] == k and left > 0:
                    line = lines[top[i]] if from_top else lines[len(lines) - 1 - bottom[i]]
                    keys[i] = _keys(line, number)
            counts = Counter(key for page_keys in keys.values() for key in page_keys)
            running = {key for key, c in counts.items() if c >= need}
            if not running:
                break
            for i, page_keys in keys.items():
                if running.intersection(page_keys):
                    cut[i] += 1
    return list(zip(top, bottom, strict=True))
