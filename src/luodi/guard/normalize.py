"""Text normalisation for matching, with a map back to the original text.

Every check runs on a normalised copy of the text: NFKC per character (full-width "ＢＯＭＢ"
becomes "bomb", "１３８" becomes "138"), lower case, curly quotes made straight, and format
characters (zero-width spaces and joiners, soft hyphens: Unicode category Cf) removed so that
"炸\u200b弹" cannot slip past a lexicon. Matches are found in the normalised text and reported
as spans of the original text through an index map.

Normalising character by character (rather than NFKC over the whole string) keeps the
mapping exact and makes normalisation of a stream of deltas equal to normalisation of their
concatenation, which the stream guard relies on. The price: a base letter followed by a
combining accent is not composed ("e\u0301" stays two characters).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_QUOTES = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'}


def _normal_form(ch: str) -> str:
    if unicodedata.category(ch) == "Cf":
        return ""
    return _QUOTES.get(ch) or unicodedata.normalize("NFKC", ch).lower()


class _Changes:
    """The characters whose normal form differs from themselves, and a pattern finding them.

    Built on first use for the Basic Multilingual Plane (~50 ms); characters beyond it
    (emoji, mathematical letters) are all sent to the callback and cached as they come.
    Substituting only the characters that change runs several times faster than
    `str.translate` over every character of a Chinese text.
    """

    def __init__(self) -> None:
        self.table: dict[str, str] = {}
        for code in range(0x10000):
            if 0xD800 <= code < 0xE000:  # surrogates are not characters
                continue
            ch = chr(code)
            out = _normal_form(ch)
            if out != ch:
                self.table[ch] = out
        cls = "".join(map(re.escape, sorted(self.table)))
        self.rx = re.compile(f"[{cls}\U00010000-\U0010ffff]")

    def get(self, ch: str) -> str:
        out = self.table.get(ch)
        if out is None:
            out = self.table[ch] = _normal_form(ch)
        return out


_changes: _Changes | None = None


def _get_changes() -> _Changes:
    global _changes
    if _changes is None:
        _changes = _Changes()
    return _changes


@dataclass(frozen=True)
class Normalized:
    """A normalised text and, when positions shifted, the original index of each character.

    `index` is None when the normalised text aligns with the original character for
    character (the usual case: ASCII, Chinese, full-width forms).
    """

    text: str
    index: list[int] | None

    def orig_span(self, start: int, end: int) -> tuple[int, int]:
        """The span of the original text that normalised characters [start, end) came from."""
        if self.index is None:
            return start, end
        return self.index[start], self.index[end - 1] + 1


def normalize_char(ch: str) -> str:
    """The normal form of one character (possibly empty or longer than one character)."""
    return _get_changes().get(ch) if not ch.isascii() else ch.lower()


def normalize(text: str) -> Normalized:
    """Normalise `text` for matching (see the module docstring); linear time and C speed
    unless a character changes length (then one Python step per character)."""
    if text.isascii():
        # ASCII lower-casing is one to one, and ASCII has no Cf characters or NFKC changes
        return Normalized(text.lower(), None)
    changes = _get_changes()
    found = set(changes.rx.findall(text))
    if not found:
        return Normalized(text, None)
    outs = {ch: changes.get(ch) for ch in found}
    if all(len(o) == 1 for o in outs.values()):
        norm = text
        if found.isdisjoint(outs.values()):
            # few distinct characters change (full-width punctuation, capitals): one C-speed
            # replace per distinct character beats a callback per occurrence
            for ch, out in outs.items():
                norm = norm.replace(ch, out)
        else:  # an output is itself replaced: one pass with a callback keeps it single
            norm = changes.rx.sub(lambda m: outs[m.group()], text)
        return Normalized(norm, None)
    parts: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        out = changes.get(ch) if changes.rx.match(ch) else ch
        parts.append(out)
        index.extend([i] * len(out))
    return Normalized("".join(parts), index)


def is_word_char(ch: str) -> bool:
    """True for characters that make up Latin-script words (letters, digits, '_' of the
    alphabetic scripts before the CJK blocks): a Latin lexicon term must not touch one."""
    return ch == "_" or (ch.isalnum() and ord(ch) < 0x2E80)
