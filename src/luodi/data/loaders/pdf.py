"""PDF loader (pypdf): one segment per page, running headers and footers removed."""

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
from luodi.data.loaders.util import short_error

_EDGE_LINES = 3
"""How many lines from the top and from the bottom of a page may be header/footer."""
_MIN_PAGES = 3
_DIGITS = re.compile(r"\d+")


@loader(".pdf")
def load_pdf(path: Path) -> Loaded:
    """Text of each page in content order, one segment per page with text, location "page N".

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
        for number in range(1, count + 1):
            try:
                text = reader.pages[number - 1].extract_text() or ""
            except Exception as exc:
                loaded.problems.append(
                    (f"page {number}", f"text extraction failed: {short_error(exc)}")
                )
                continue
            lines = [" ".join(line.split()) for line in text.split("\n")]
            lines = [line for line in lines if line]
            if lines:
                pages.append((number, lines))
    if not pages:
        if count == 0:
            raise FileRejected("PDF has no pages")
        if loaded.problems:
            raise FileRejected(f"no page text could be extracted ({loaded.problems[0][1]})")
        raise FileRejected("PDF has no text layer (scanned images?); OCR is not supported")
    for number, lines in strip_running_lines(pages, count):
        if lines:
            loaded.segments.append(Segment("\n".join(lines), f"page {number}"))
    return loaded


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
    """`pages` ((page number, lines)) with running header and footer lines removed.

    Edge positions are examined from the outside in: position k from the top counts only on
    pages whose first k lines were all removed, so a header is peeled off line by line and
    body text under a non-repeating line is never touched. The threshold is half of
    `total_pages` (pages without text count too), and at least 3.
    """
    if total_pages < _MIN_PAGES:
        return pages
    need = max(_MIN_PAGES, math.ceil(total_pages / 2))
    top = [0] * len(pages)
    bottom = [0] * len(pages)
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
    return [
        (number, lines[top[i] : len(lines) - bottom[i]]) for i, (number, lines) in enumerate(pages)
    ]
