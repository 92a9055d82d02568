"""Quality filters: length, special-character ratio, character n-gram repetition, language.

Each judges `RecordKind.content(rec)` (all texts of a record joined by newlines) and keeps the
record unchanged or drops it with a reason and the measured value against the threshold.
The measures are pure functions (`special_ratio`, `repetition_ratios`, `detect_language`) so
reports and tests can use them on their own.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from functools import lru_cache
from typing import ClassVar

import numpy as np
from pydantic import Field, model_validator

from luodi.data.ops.base import Drop, Operator, register
from luodi.data.records import Record

_CJK_EXT = (0x20000, 0x323AF)  # CJK Unified Ideographs Extension B-H (outside the BMP)


def _codepoints(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The code points of all `texts` concatenated (uint32) and each text's length."""
    lens = np.fromiter(map(len, texts), np.int64, len(texts))
    # surrogatepass: lone surrogates (from sloppy JSON) are code points like any other here.
    raw = "".join(texts).encode("utf-32-le", "surrogatepass")
    return np.frombuffer(raw, np.uint32), lens


CHUNK_CHARS = 2_000_000
"""Characters handled in one numpy pass: bounds the arrays (~40 bytes per character at peak
for repetition) whatever the batch size."""


def _chunks(texts: list[str], max_texts: int) -> Iterator[list[str]]:
    """`texts` in order, cut into lists of at most `max_texts` texts and about CHUNK_CHARS
    characters (a longer single text is a chunk of its own)."""
    chunk: list[str] = []
    size = 0
    for t in texts:
        if chunk and (len(chunk) >= max_texts or size + len(t) > CHUNK_CHARS):
            yield chunk
            chunk, size = [], 0
        chunk.append(t)
        size += len(t)
    if chunk:
        yield chunk


def _per_text_sums(values: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Sum of `values` (one per character of the concatenated texts) within each text."""
    out = np.zeros(len(lens), dtype=np.int64)
    nonempty = lens > 0
    if nonempty.any():
        starts = (np.cumsum(lens) - lens)[nonempty]
        out[nonempty] = np.add.reduceat(values, starts, dtype=np.int64)
    return out


# --- length -------------------------------------------------------------------------------


@register
class FilterLength(Operator):
    """Drop records whose content is shorter or longer than the limits (in characters)."""

    name: ClassVar[str] = "filter_length"
    min_chars: int = Field(
        default=10, ge=0, description="Records with fewer characters are dropped (too_short)."
    )
    max_chars: int = Field(
        default=100_000, ge=1, description="Records with more characters are dropped (too_long)."
    )

    @model_validator(mode="after")
    def _check_range(self) -> FilterLength:
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars {self.min_chars} > max_chars {self.max_chars}")
        return self

    def process(self, batch: list[Record]) -> list[Record | Drop]:
        """Each record, or Drop too_short / too_long with its length."""
        out: list[Record | Drop] = []
        lo, hi = self.min_chars, self.max_chars
        content = self.kind.content  # bound once: `kind` is a pydantic private attr
        for rec in batch:
            n = len(content(rec))
            if n < lo:
                out.append(Drop("too_short", f"length {n} < {lo}"))
            elif n > hi:
                out.append(Drop("too_long", f"length {n} > {hi}"))
            else:
                out.append(rec)
        return out


# --- special characters -------------------------------------------------------------------

CJK_PUNCTUATION = "，。！？；：、“”‘’（）《》【】「」『』〈〉〔〕…—·～"
# Prose punctuation only: runs of #$&*+<=>@[\]^_`{|}~ are what garbled extraction and
# symbol spam look like, so those count as special (as data-juicer's filter counts them).
PROSE_PUNCTUATION = ",.!?;:'\"()-/%"
ORDINARY_PUNCTUATION = PROSE_PUNCTUATION + CJK_PUNCTUATION


@lru_cache(maxsize=1)
def _special_table() -> np.ndarray:
    """1 for each BMP code point that is special: not a letter or digit of any script (nor
    a combining mark of one), not whitespace, not ASCII/CJK punctuation (built on first use)."""
    table = np.ones(0x10000, dtype=np.uint8)
    for cp in range(0x10000):
        ch = chr(cp)
        if ch.isalnum() or ch.isspace() or unicodedata.category(ch).startswith("M"):
            table[cp] = 0
    for ch in ORDINARY_PUNCTUATION:
        table[ord(ch)] = 0
    return table


def _special_chunk(texts: list[str]) -> np.ndarray:
    """special_counts of one chunk, in one numpy pass."""
    cp, lens = _codepoints(texts)
    flags = _special_table()[np.minimum(cp, 0xFFFF)]
    high = cp > 0xFFFF
    if high.any():
        ext = (cp >= _CJK_EXT[0]) & (cp <= _CJK_EXT[1])
        flags = np.where(high, ~ext, flags.astype(bool)).astype(np.uint8)
    return _per_text_sums(flags, lens)


def special_counts(texts: list[str]) -> np.ndarray:
    """Number of special characters in each text (see `special_ratio`), for a batch at once.

    Supplementary characters are special except CJK ideographs (extensions B-H): beyond the
    BMP live emoji, symbols and private-use glyphs of broken font extraction.
    """
    if not texts:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([_special_chunk(c) for c in _chunks(texts, len(texts))])


def special_ratio(text: str) -> float:
    """Share of the characters of `text` that are special: neither letters/digits (any
    script), whitespace, nor prose punctuation (,.!?;:'\"()-/% and CJK); 0.0 for empty text."""
    if not text:
        return 0.0
    return int(special_counts([text])[0]) / len(text)


@register
class FilterSpecialRatio(Operator):
    """Drop records dominated by symbols (garbled extraction, tables of glyphs, emoji spam)."""

    name: ClassVar[str] = "filter_special_ratio"
    max_ratio: float = Field(
        default=0.3,
        ge=0.0,
        le=1.0,
        description="Drop when the share of special characters (not letters, digits, "
        "whitespace or prose punctuation) exceeds this (special_ratio).",
    )

    def process(self, batch: list[Record]) -> list[Record | Drop]:
        """Each record, or Drop special_ratio with the measured share."""
        content = self.kind.content
        texts = [content(r) for r in batch]
        counts = special_counts(texts).tolist()
        out: list[Record | Drop] = []
        for rec, text, k in zip(batch, texts, counts, strict=True):
            r = k / len(text) if text else 0.0
            out.append(
                Drop("special_ratio", f"ratio {r:.2f} > {self.max_ratio}")
                if r > self.max_ratio
                else rec
            )
        return out


# --- repetition ---------------------------------------------------------------------------

_HASH_MUL = np.uint64(1099511628211)  # FNV-1a 64-bit prime: odd, mixes code points well
_DOC_BITS = 11
_DOC_MASK = np.uint64((1 << _DOC_BITS) - 1)
_MAX_DOCS = (1 << _DOC_BITS) - 1  # the all-ones doc index marks n-grams that cross documents


def _ngram_hashes(cp: np.ndarray, n: int) -> np.ndarray:
    """Polynomial hashes (mod 2^64) of every length-`n` window of `cp`, in O(log n) passes:
    H(a+b)[i] = H(a)[i] * P^b + H(b)[i+a], doubling the window each step."""
    pow2: dict[int, np.ndarray] = {1: cp}
    size = 1
    while size * 2 <= n:
        h = pow2[size]
        nxt = h[:-size] * _HASH_MUL ** np.uint64(size)
        nxt += h[size:]
        pow2[size * 2] = nxt
        size *= 2
    out, width = pow2[size], size
    rest = n - size
    for part in sorted(pow2, reverse=True):
        if rest >= part:
            h = pow2[part]
            m = len(cp) - width - part + 1
            out = out[:m] * _HASH_MUL ** np.uint64(part)
            out += h[width : width + m]
            width += part
            rest -= part
    return out


def _repetition_chunk(texts: list[str], n: int) -> list[float]:
    """Repetition ratios of up to `_MAX_DOCS` texts, hashed and counted together in numpy.

    Every character n-gram gets a 64-bit polynomial hash whose low bits are replaced by the
    index of its document; sorting those keys puts equal n-grams of one document next to
    each other, so one sort and one bincount count every document's repeated n-grams.
    """
    lens = np.fromiter(map(len, texts), np.int64, len(texts))
    grams = np.maximum(lens - n + 1, 0)
    m = int(lens.sum()) - n + 1
    if m <= 0 or not grams.any():
        return [0.0] * len(texts)
    cp, _ = _codepoints(texts)
    h = _ngram_hashes(cp.astype(np.uint64), n)
    keys = h if h.base is None else h.copy()  # own the memory: sorted in place below
    keys <<= np.uint64(_DOC_BITS)
    keys |= np.repeat(np.arange(len(texts), dtype=np.uint64), lens)[:m]
    # Windows starting in the last n-1 characters of a text cross into the next one; they
    # get a key no document index can produce.
    ends = np.cumsum(lens)
    tail = ends[:, None] - np.arange(1, n, dtype=np.int64)[None, :]
    crossing = tail[(tail >= (ends - lens)[:, None]) & (tail < m)]
    keys[crossing] = np.uint64(0xFFFFFFFFFFFFFFFF)
    keys.sort()
    same = keys[1:] == keys[:-1]
    rep = np.zeros(m, dtype=bool)
    rep[1:] = same
    rep[:-1] |= same
    counts = np.bincount((keys[rep] & _DOC_MASK).astype(np.intp), minlength=_MAX_DOCS + 1)
    ratios = counts[: len(texts)] / np.maximum(grams, 1)
    return ratios.tolist()


def repetition_ratios(texts: list[str], n: int = 10) -> list[float]:
    """For each text, the fraction of its character n-gram occurrences that belong to
    n-grams occurring more than once in that text (0.0 for texts shorter than `n`).

    Character-level, so it measures Chinese as well as English. Equal n-grams are found by
    64-bit hashes; a false match between different n-grams is vanishingly unlikely.
    """
    out: list[float] = []
    for chunk in _chunks(texts, _MAX_DOCS):
        out.extend(_repetition_chunk(chunk, n))
    return out


@register
class FilterRepetition(Operator):
    """Drop records made of repeated text (as Gopher / data-juicer: character n-grams)."""

    name: ClassVar[str] = "filter_repetition"
    n: int = Field(default=10, ge=2, le=100, description="Length of the character n-grams.")
    max_ratio: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Drop when the fraction of n-gram occurrences that belong to n-grams "
        "occurring more than once exceeds this (repetition).",
    )

    def process(self, batch: list[Record]) -> list[Record | Drop]:
        """Each record, or Drop repetition with the measured ratio."""
        content = self.kind.content
        ratios = repetition_ratios([content(r) for r in batch], self.n)
        return [
            Drop("repetition", f"ratio {r:.2f} > {self.max_ratio}") if r > self.max_ratio else rec
            for rec, r in zip(batch, ratios, strict=True)
        ]


# --- language -----------------------------------------------------------------------------


# Scripts that decide a language, as (index, name, BMP ranges). Index 0 is "not a letter".
_SCRIPT_RANGES: list[tuple[str, list[tuple[int, int]]]] = [
    ("cjk", [(0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF)]),
    ("kana", [(0x3040, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F)]),
    ("hangul", [(0xAC00, 0xD7AF), (0x1100, 0x11FF), (0x3130, 0x318F)]),
    ("ascii", [(0x41, 0x5A), (0x61, 0x7A)]),
    ("accented", [(0xC0, 0x24F), (0x1E00, 0x1EFF)]),
    ("ru", [(0x400, 0x52F)]),
    ("ar", [(0x600, 0x6FF), (0x750, 0x77F), (0x8A0, 0x8FF)]),
    ("el", [(0x370, 0x3FF), (0x1F00, 0x1FFF)]),
    ("he", [(0x590, 0x5FF)]),
    ("th", [(0xE00, 0xE7F)]),
    ("hi", [(0x900, 0x97F)]),
]
_SCRIPT_NAMES = ["none", *(name for name, _ in _SCRIPT_RANGES), "other"]
_SCRIPT = {name: i for i, name in enumerate(_SCRIPT_NAMES)}
_ALPHABETS = ("ru", "ar", "el", "he", "th", "hi")
"""Alphabetic scripts named by the language they most likely are in enterprise data; one
counts when it has at least half of the letters."""

ZH_MIN_SHARE = 0.3
"""CJK share of letters from which a text is Chinese (mixed zh/en enterprise text is zh)."""
JA_MIN_KANA_SHARE = 0.1
KO_MIN_HANGUL_SHARE = 0.3
EN_MAX_ACCENTED_SHARE = 0.05
"""Latin text with more accented letters than this (and at least 3) is not English."""
LANGUAGES = ("zh", "en", "ja", "ko", *_ALPHABETS, "latin", "other", "unknown")
"""Every code detect_language returns."""


@lru_cache(maxsize=1)
def _script_table() -> np.ndarray:
    """Script index of every BMP code point that is a letter (category L*), else 0."""
    table = np.zeros(0x10000, dtype=np.uint8)
    for name, ranges in _SCRIPT_RANGES:
        for lo, hi in ranges:
            table[lo : hi + 1] = _SCRIPT[name]
    other = _SCRIPT["other"]
    for cp in range(0x10000):
        is_letter = unicodedata.category(chr(cp)).startswith("L")
        if not is_letter:
            table[cp] = 0
        elif table[cp] == 0:
            table[cp] = other
    return table


def _script_chunk(texts: list[str]) -> np.ndarray:
    """script_counts of one chunk, in one numpy pass."""
    cp, lens = _codepoints(texts)
    ids = _script_table()[np.minimum(cp, 0xFFFF)]
    high = cp > 0xFFFF
    if high.any():
        ext = (cp >= _CJK_EXT[0]) & (cp <= _CJK_EXT[1])
        ids = np.where(high, np.where(ext, _SCRIPT["cjk"], 0), ids).astype(np.uint8)
    out = np.zeros((len(texts), len(_SCRIPT_NAMES)), dtype=np.int64)
    for i in range(1, len(_SCRIPT_NAMES)):
        mask = ids == i
        if mask.any():
            out[:, i] = _per_text_sums(mask.view(np.uint8), lens)
    return out


def script_counts(texts: list[str]) -> np.ndarray:
    """Letters per script of each text: an int array (len(texts), len(_SCRIPT_NAMES)).

    A lookup table for the BMP; beyond it only the CJK extensions count (as CJK), other
    supplementary characters count as non-letters.
    """
    if not texts:
        return np.zeros((0, len(_SCRIPT_NAMES)), dtype=np.int64)
    return np.concatenate([_script_chunk(c) for c in _chunks(texts, len(texts))])


def _decide(counts: np.ndarray, min_letters: int) -> str:
    """The language for one row of script counts (see detect_language for the rules)."""
    c = counts.tolist()
    letters = sum(c[1:])
    if letters < max(min_letters, 1):
        return "unknown"
    if c[_SCRIPT["kana"]] >= JA_MIN_KANA_SHARE * letters:
        return "ja"
    if c[_SCRIPT["hangul"]] >= KO_MIN_HANGUL_SHARE * letters:
        return "ko"
    if c[_SCRIPT["cjk"]] >= ZH_MIN_SHARE * letters:
        return "zh"
    accented = c[_SCRIPT["accented"]]
    latin = c[_SCRIPT["ascii"]] + accented
    if latin >= 0.5 * letters:
        return "latin" if accented >= 3 and accented > EN_MAX_ACCENTED_SHARE * latin else "en"
    for code in _ALPHABETS:
        if c[_SCRIPT[code]] >= 0.5 * letters:
            return code
    return "other"


@lru_cache(maxsize=16)
def _enough_ascii_letters(k: int) -> re.Pattern[str]:
    # Stops scanning as soon as k letters are seen, instead of counting the whole text.
    return re.compile(rf"(?:[^A-Za-z]*[A-Za-z]){{{k}}}")


def detect_languages(texts: list[str], min_letters: int = 5) -> list[str]:
    """detect_language of each text, computed for the batch at once."""
    out: list[str | None] = []
    rest: list[int] = []
    for i, t in enumerate(texts):
        if t.isascii():
            ok = _enough_ascii_letters(max(min_letters, 1)).match(t)
            out.append("en" if ok else "unknown")
        else:
            out.append(None)
            rest.append(i)
    if rest:
        counts = script_counts([texts[i] for i in rest])
        for i, row in zip(rest, counts, strict=True):
            out[i] = _decide(row, min_letters)
    return [o or "unknown" for o in out]


def detect_language(text: str, min_letters: int = 5) -> str:
    """The language of `text` judged by script: "zh", "en", "ja", "ko", "ru", "ar", "el",
    "he", "th", "hi", "latin" (Latin script with many accents: not English), "other", or
    "unknown" when it has fewer than `min_letters` letters (any script).

    Rules, in order: kana >= 10% of letters -> ja (Japanese mixes kana into kanji); hangul
    >= 30% -> ko; CJK ideographs >= 30% -> zh (so Chinese text full of English product names
    stays zh); Latin letters >= 50% -> en (latin when more than 5% and at least 3 of them are
    accented); else the alphabetic script with >= 50% of the letters; else other.
    """
    return detect_languages([text], min_letters)[0]


@register
class FilterLanguage(Operator):
    """Keep only records in the listed languages (detected by script; see detect_language)."""

    name: ClassVar[str] = "filter_language"
    languages: list[str] = Field(
        default_factory=lambda: ["zh", "en"],
        min_length=1,
        description="Languages to keep: codes from detect_language (zh, en, ja, ko, ru, ar, "
        "el, he, th, hi, latin, other).",
    )

    @model_validator(mode="after")
    def _check_codes(self) -> FilterLanguage:
        unknown = sorted(set(self.languages) - set(LANGUAGES))
        if unknown:
            raise ValueError(f"unknown language codes {unknown}; known: {', '.join(LANGUAGES)}")
        return self

    min_letters: int = Field(
        default=5,
        ge=1,
        description="Records with fewer letters than this are of unknown language.",
    )
    drop_unknown: bool = Field(
        default=False,
        description="Drop records of unknown language (too few letters) instead of keeping them.",
    )

    def process(self, batch: list[Record]) -> list[Record | Drop]:
        """Each record, or Drop language naming the detected language."""
        keep = set(self.languages)
        if not self.drop_unknown:
            keep.add("unknown")
        allowed = ", ".join(self.languages)
        content = self.kind.content
        langs = detect_languages([content(r) for r in batch], self.min_letters)
        return [
            rec if lang in keep else Drop("language", f"{lang} not in {allowed}")
            for rec, lang in zip(batch, langs, strict=True)
        ]
