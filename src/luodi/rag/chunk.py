"""Structure-aware chunking of loaded documents into retrievable pieces.

A document is the list of `Segment`s its loader returned; its text is the segments joined with
"\\n\\n", and every chunk is an exact slice of that text (`text == doc_text[start:end]`), so a
citation can point back into the document.

How a document is cut:
- each segment's location gives the chunk's place: "page N" is a page, a heading path
  ("1 总则 > 1.2 范围") is a section; plain-text locations ("whole file", "lines 3-40") have
  neither, but Markdown headings ("## 2 安装") inside their text open sections;
- a section (or page) is cut into blocks: paragraphs (blank-line separated), headings,
  Markdown tables (runs of lines starting with "|") and fenced code; a table or code block
  that fits in `size` is never split;
- blocks longer than `size` are split at sentence ends (。！？；…!? , "." before a space, and
  newlines), a sentence longer than `size` at a comma or space if one is in its second half,
  else hard cut;
- consecutive pieces of the same section are packed greedily up to `size`; a new chunk of the
  same section starts with up to `overlap` of the previous chunk's tail, beginning at a
  sentence boundary (never inside a table); no chunk crosses a section or page.
Two chunks with identical text in one document would share an id; only the first is kept.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from luodi.data.loaders.base import Segment
from luodi.errors import BadInputError

SEGMENT_JOINER = "\n\n"
"""How a document's segments are joined into the text that chunk offsets point into."""

# Locations that name neither a section nor a page (see luodi.data.loaders.sections).
_PLAIN_LOCATION = re.compile(r"^(whole file|lines? \d+(-\d+)?|before first heading)$")
_PAGE_LOCATION = re.compile(r"^page (\d+)$")
_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_TABLE_LINE = re.compile(r"^ {0,3}\|")
# A sentence ends after 。！？；… or !? (closing quotes/brackets stay with it), after "."
# followed by whitespace, and at a newline.
_SENTENCE_END = re.compile(r"(?:[。！？；!?]+|…+|\.(?=\s|$))[”’\"'」』）)\]]*|\n")
# Where an over-long sentence is best cut when it has to be.
_WEAK_BREAK = re.compile(r"[，,、：:]|\s")


class ChunkConfig(BaseModel):
    """How documents are cut into chunks."""

    model_config = ConfigDict(extra="forbid")

    # 300/50 characters: on the sample question set (bench/bench_retrieval.py) e5's hit@5 and
    # MRR plateau between 250 and 400 and fall off at 200 and 500; smaller chunks give the
    # embedding one topic to represent, and a table row or a short section fits whole.
    size: int = Field(300, ge=1, description="Maximum chunk length, in `unit`.")
    overlap: int = Field(
        50,
        ge=0,
        description="Length (in `unit`) of the previous chunk's tail repeated at the start of "
        "the next chunk of the same section; it starts at a sentence boundary.",
    )
    unit: Literal["chars", "tokens"] = Field(
        "chars",
        description="What `size` and `overlap` count: characters, or tokens as the embedder's "
        "count_tokens counts them.",
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkConfig:
        if self.overlap >= self.size:
            raise ValueError(f"overlap ({self.overlap}) must be smaller than size ({self.size})")
        return self


@dataclass(frozen=True)
class Chunk:
    """A retrievable piece of one document, with where it came from."""

    id: str
    """Stable: sha256(doc_id + "\\0" + text)[:16]."""
    doc_id: str
    source: str
    text: str
    section: str | None
    """Heading path ("1 总则 > 1.2 范围") or None."""
    page: int | None
    start: int
    """Offset of `text` in the document text (segments joined with "\\n\\n")."""
    end: int


def chunk_id(doc_id: str, text: str) -> str:
    """The stable id of a chunk: sha256(doc_id + "\\0" + text), first 16 hex digits."""
    return hashlib.sha256(f"{doc_id}\0{text}".encode()).hexdigest()[:16]


def document_text(segments: Sequence[Segment]) -> str:
    """The text chunk offsets point into: the segments' texts joined with a blank line."""
    return SEGMENT_JOINER.join(s.text for s in segments)


@dataclass
class _Unit:
    """A piece that is never split further: a block that fits, a sentence, or a hard cut."""

    start: int
    end: int
    group: int
    cuts: list[int] = field(default_factory=list)
    """Sentence starts inside the unit where an overlap may begin."""
    heading: bool = False


@dataclass
class _Place:
    section: str | None
    page: int | None


def chunk_segments(
    doc_id: str,
    source: str,
    segments: list[Segment],
    cfg: ChunkConfig,
    count: Callable[[str], int] | None = None,
) -> list[Chunk]:
    """Cut one document (its loader's segments) into chunks, in document order.

    `count(text)` measures length when `cfg.unit` is "tokens" (required then; e.g.
    `lambda t: embedder.count_tokens([t])[0]`); it must be able to count past `cfg.size` or
    BadInputError is raised (an embedder that truncates at 256 tokens cannot measure 500).
    Every chunk satisfies `text == document_text(segments)[start:end]`, is at most `size` long
    (unless one indivisible character exceeds it), has no leading/trailing whitespace, and
    lies within one section and page. Empty or blank documents give [].
    """
    if cfg.unit == "tokens":
        if count is None:
            raise BadInputError("chunking in tokens needs a count function (the embedder's)")
        probe = "x " * (cfg.size + 8)
        if count(probe) <= cfg.size:
            raise BadInputError(
                f"chunk size {cfg.size} tokens is more than the embedder can count (it reads at "
                f"most {count(probe)} tokens); choose a smaller size or unit 'chars'"
            )
    text = document_text(segments)
    places: list[_Place] = []
    units = _units(text, segments, cfg, _measure(text, cfg, count), places)
    spans = _pack(units, cfg, _measure(text, cfg, count))
    chunks: list[Chunk] = []
    seen: set[str] = set()
    for start, end, group in spans:
        body = text[start:end]
        cid = chunk_id(doc_id, body)
        if cid in seen:
            continue
        seen.add(cid)
        place = places[group]
        chunks.append(Chunk(cid, doc_id, source, body, place.section, place.page, start, end))
    return chunks


def _measure(text: str, cfg: ChunkConfig, count: Callable[[str], int] | None):
    """Length of text[a:b] in the configured unit."""
    if cfg.unit == "chars" or count is None:
        return lambda a, b: b - a
    return lambda a, b: count(text[a:b])


def _place_of(segment: Segment) -> tuple[str | None, int | None, bool]:
    """(section, page, plain) from a segment's location and meta; plain: headings in its
    text open sections."""
    location = segment.location.strip()
    page_meta = segment.meta.get("page")
    page = page_meta if isinstance(page_meta, int) else None
    section_meta = segment.meta.get("section")
    if isinstance(section_meta, str) and section_meta:
        return section_meta, page, False
    m = _PAGE_LOCATION.match(location)
    if m:
        return None, int(m.group(1)), False
    if not location or _PLAIN_LOCATION.match(location):
        return None, page, True
    return location, page, False


def _units(
    text: str,
    segments: Sequence[Segment],
    cfg: ChunkConfig,
    measure: Callable[[int, int], int],
    places: list[_Place],
) -> list[_Unit]:
    """The document's indivisible pieces, each tagged with its group (section + page run)."""
    units: list[_Unit] = []
    headings: list[tuple[int, str]] = []  # open in-text headings of plain segments
    offset = 0
    for segment in segments:
        section, page, plain = _place_of(segment)
        for start, end, kind, level, title in _blocks(segment.text, offset):
            if plain and kind == "heading":
                while headings and headings[-1][0] >= level:
                    headings.pop()
                headings.append((level, title))
            where = section
            if plain:
                where = " > ".join(t for _, t in headings) or None
            if not places or (places[-1].section, places[-1].page) != (where, page):
                places.append(_Place(where, page))
            group = len(places) - 1
            if measure(start, end) <= cfg.size:
                cuts = [] if kind in ("table", "code") else _sentence_starts(text, start, end)
                units.append(_Unit(start, end, group, cuts, kind == "heading"))
            elif kind in ("table", "code"):
                # Too big to keep whole: rows (lines) are the next-best boundary.
                units.extend(_split(text, _lines(text, start, end), group, cfg, measure))
            else:
                units.extend(_split(text, _sentences(text, start, end), group, cfg, measure))
        offset += len(segment.text) + len(SEGMENT_JOINER)
    # A heading with no body before its first subheading adds nothing a chunk's section path
    # does not already say (as in luodi.data.loaders.sections).
    with_body = {u.group for u in units if not u.heading}
    return [u for u in units if u.group in with_body]


def _blocks(text: str, base: int) -> list[tuple[int, int, str, int, str]]:
    """(start, end, kind, heading level, heading title) of each block of a segment's text.

    Offsets are `base` + position, trimmed of surrounding whitespace. Kinds: "heading" (one
    ATX line), "table" (a run of "|" lines), "code" (a fenced block, blank lines included),
    "text" (a paragraph).
    """
    out: list[tuple[int, int, str, int, str]] = []
    cur: list[tuple[int, int]] = []  # (start, end) of the lines of the open block
    cur_kind = "text"
    fence: str | None = None

    def close() -> None:
        nonlocal cur
        if cur:
            a, b = cur[0][0], cur[-1][1]
            seg = text[a:b]
            lead = len(seg) - len(seg.lstrip())
            trail = len(seg) - len(seg.rstrip())
            if b - trail > a + lead:
                out.append((base + a + lead, base + b - trail, cur_kind, 0, ""))
        cur = []

    pos = 0
    for line in text.split("\n"):
        a, b = pos, pos + len(line)
        pos = b + 1
        if fence is not None:
            cur.append((a, b))
            if line.strip().startswith(fence):
                fence = None
                close()
            continue
        opened = _FENCE.match(line)
        if opened:
            close()
            cur_kind, fence = "code", opened.group(1)[0] * len(opened.group(1))
            cur.append((a, b))
            continue
        if not line.strip():
            close()
            continue
        heading = _ATX.match(line)
        if heading:
            close()
            lead = len(line) - len(line.lstrip())
            stripped = line.strip()
            out.append(
                (base + a + lead, base + a + lead + len(stripped), "heading",
                 len(heading.group(1)), " ".join(heading.group(2).split()))
            )  # fmt: skip
            continue
        kind = "table" if _TABLE_LINE.match(line) else "text"
        if cur and kind != cur_kind:
            close()
        cur_kind = kind
        cur.append((a, b))
    close()
    return out


def _trimmed(text: str, a: int, b: int) -> tuple[int, int] | None:
    """(a, b) narrowed to exclude surrounding whitespace; None when only whitespace."""
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return (a, b) if b > a else None


def _sentences(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Sentence spans of text[start:end], trimmed, in order."""
    spans: list[tuple[int, int]] = []
    a = start
    for m in _SENTENCE_END.finditer(text, start, end):
        span = _trimmed(text, a, m.end())
        if span:
            spans.append(span)
        a = m.end()
    span = _trimmed(text, a, end)
    if span:
        spans.append(span)
    return spans


def _lines(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans = []
    a = start
    while a < end:
        b = text.find("\n", a, end)
        b = end if b < 0 else b
        span = _trimmed(text, a, b)
        if span:
            spans.append(span)
        a = b + 1
    return spans


def _sentence_starts(text: str, start: int, end: int) -> list[int]:
    """Starts of the 2nd, 3rd... sentences of text[start:end] (overlap may begin there)."""
    return [a for a, _ in _sentences(text, start, end)[1:]]


def _split(
    text: str,
    spans: list[tuple[int, int]],
    group: int,
    cfg: ChunkConfig,
    measure: Callable[[int, int], int],
) -> list[_Unit]:
    """Units of `spans` (sentences or lines); a span over `size` is cut into pieces."""
    out: list[_Unit] = []
    for a, b in spans:
        while a < b:
            if measure(a, b) <= cfg.size:
                out.append(_Unit(a, b, group))
                break
            # Pieces leave room for the overlap the next piece starts with.
            cut = _cut_point(text, a, b, cfg.size - cfg.overlap, measure)
            span = _trimmed(text, a, cut)
            if span:
                # Inside a cut sentence an overlap may begin after a comma or space.
                breaks = [m.end() for m in _WEAK_BREAK.finditer(text, span[0], span[1])]
                cuts = [c for c in breaks if c < span[1] and not text[c].isspace()]
                out.append(_Unit(span[0], span[1], group, cuts))
            a = cut
            while a < b and text[a].isspace():
                a += 1
    return out


def _cut_point(text: str, a: int, b: int, size: int, measure: Callable[[int, int], int]) -> int:
    """Where to cut text[a:b] (longer than `size`): the furthest end that fits, moved back to
    a comma or space when one lies in the second half of that piece."""
    lo, hi = a + 1, b  # the largest e with measure(a, e) <= size; at least one character
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if measure(a, mid) <= size:
            lo = mid
        else:
            hi = mid - 1
    fit = lo
    best = None
    for m in _WEAK_BREAK.finditer(text, a + max(1, (fit - a) // 2), fit):
        best = m.end()
    return best if best is not None and best < b else fit


def _pack(
    units: list[_Unit], cfg: ChunkConfig, measure: Callable[[int, int], int]
) -> list[tuple[int, int, int]]:
    """Greedy packing of units into (start, end, group) spans, with in-section overlap."""
    spans: list[tuple[int, int, int]] = []
    cur_start = cur_end = cur_group = -1
    cuts: list[int] = []  # ascending positions inside the current chunk where a tail may start
    for u in units:
        if cur_group == u.group and measure(cur_start, u.end) <= cfg.size:
            cur_end = u.end
            cuts.append(u.start)
            cuts.extend(u.cuts)
            continue
        if cur_group >= 0:
            spans.append((cur_start, cur_end, cur_group))
        start = u.start
        kept: list[int] = []
        if cur_group == u.group and cfg.overlap > 0:
            tail = _overlap_start(cuts, cur_start, cur_end, u.end, cfg, measure)
            if tail is not None:
                start = tail
                kept = [c for c in cuts if c > tail]
        cur_start, cur_end, cur_group = start, u.end, u.group
        cuts = kept + ([u.start] if u.start != start else []) + u.cuts
    if cur_group >= 0:
        spans.append((cur_start, cur_end, cur_group))
    return spans


def _overlap_start(
    cuts: list[int],
    cur_start: int,
    cur_end: int,
    next_end: int,
    cfg: ChunkConfig,
    measure: Callable[[int, int], int],
) -> int | None:
    """The earliest cut of the finished chunk whose tail fits in `overlap` and leaves room for
    the next unit within `size`; None when no tail fits."""
    cands = sorted(c for c in set(cuts) if cur_start < c < cur_end)

    def ok(c: int) -> bool:
        return measure(c, cur_end) <= cfg.overlap and measure(c, next_end) <= cfg.size

    # Both conditions only get easier as the cut moves right: binary-search the first.
    i = bisect.bisect_left(_Lazy(cands, ok), True)
    return cands[i] if i < len(cands) else None


class _Lazy:
    """A sequence view of a monotone predicate over candidates, evaluated on demand."""

    def __init__(self, cands: list[int], ok: Callable[[int], bool]) -> None:
        self.cands, self.ok = cands, ok

    def __len__(self) -> int:
        return len(self.cands)

    def __getitem__(self, i: int) -> bool:
        return self.ok(self.cands[i])


__all__ = ["SEGMENT_JOINER", "Chunk", "ChunkConfig", "chunk_id", "chunk_segments", "document_text"]
