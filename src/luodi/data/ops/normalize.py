"""Text normalizing operators: Unicode forms, control characters, HTML, whitespace.

Each works on every text of a record (`RecordKind.map_texts`) and returns the record itself
when nothing changed. The pure functions (`normalize_unicode_text`, `remove_control_chars_text`,
`strip_html_text`, `normalize_whitespace_text`) are what the operators apply; other operators
reuse them (e.g. `qa_strip_html_answers`). All run as a few precompiled regex passes in C; each
has a cheap test that skips texts with nothing to do.
"""

from __future__ import annotations

import html
import re
import unicodedata
from functools import lru_cache
from typing import ClassVar, Literal

from pydantic import Field

from luodi.data.ops.base import Drop, Operator, register
from luodi.data.records import Record

# NFKC folds the Kangxi radicals (U+2F00–U+2FD5) to unified ideographs but leaves almost all of
# the CJK Radicals Supplement (U+2E80–U+2EFF) alone. PDF fonts map ordinary glyphs to these
# code points, so extracted text reads "⻅⾯" for "见面"; fold the supplement radicals that are
# drawn exactly like a standalone ideograph. Component-only forms (⺅ 亻, ⺡ 氵, ⻖ 阝...) are
# kept: they are not characters of running text and have no standalone look-alike.
RADICAL_LOOKALIKES: dict[str, str] = {
    "\u2e81": "厂",  # CLIFF
    "\u2e9c": "日",  # SUN
    "\u2e9d": "月",  # MOON
    "\u2ea0": "民",  # CIVILIAN
    "\u2ea9": "王",  # JADE
    "\u2eac": "示",  # SPIRIT ONE
    "\u2ec1": "虎",  # TIGER
    "\u2ec4": "西",  # WEST TWO
    "\u2ec5": "见",  # C-SIMPLIFIED SEE
    "\u2ec6": "角",  # SIMPLIFIED HORN
    "\u2ec9": "贝",  # C-SIMPLIFIED SHELL
    "\u2ecb": "车",  # C-SIMPLIFIED CART
    "\u2ed1": "長",  # LONG ONE
    "\u2ed3": "长",  # C-SIMPLIFIED LONG
    "\u2ed4": "门",  # C-SIMPLIFIED GATE
    "\u2ed8": "青",  # BLUE
    "\u2ed9": "韦",  # C-SIMPLIFIED TANNED LEATHER
    "\u2eda": "页",  # C-SIMPLIFIED LEAF
    "\u2edb": "风",  # C-SIMPLIFIED WIND
    "\u2edc": "飞",  # C-SIMPLIFIED FLY
    "\u2edd": "食",  # EAT ONE
    "\u2ee2": "马",  # C-SIMPLIFIED HORSE
    "\u2ee3": "骨",  # BONE
    "\u2ee4": "鬼",  # GHOST
    "\u2ee5": "鱼",  # C-SIMPLIFIED FISH
    "\u2ee6": "鸟",  # C-SIMPLIFIED BIRD
    "\u2ee7": "卤",  # C-SIMPLIFIED SALT
    "\u2ee8": "麦",  # SIMPLIFIED WHEAT
    "\u2ee9": "黄",  # SIMPLIFIED YELLOW
    "\u2eea": "黾",  # C-SIMPLIFIED FROG
    "\u2eeb": "斉",  # J-SIMPLIFIED EVEN
    "\u2eec": "齐",  # C-SIMPLIFIED EVEN
    "\u2eed": "歯",  # J-SIMPLIFIED TOOTH
    "\u2eee": "齿",  # C-SIMPLIFIED TOOTH
    "\u2eef": "竜",  # J-SIMPLIFIED DRAGON
    "\u2ef0": "龙",  # C-SIMPLIFIED DRAGON
    "\u2ef2": "亀",  # J-SIMPLIFIED TURTLE
}
_RADICAL_RE = re.compile("[" + "".join(RADICAL_LOOKALIKES) + "]")


def _fold_radical(m: re.Match[str]) -> str:
    return RADICAL_LOOKALIKES[m.group()]


CJK_PUNCTUATION_KEPT = "，！？：；（）…"
"""Punctuation of Chinese writing that NFKC would turn into ASCII (，-> , …-> ...); kept by
default so cleaned Chinese text (and a model trained on it) keeps its native punctuation."""

# Composition in NFC/NFKC is algorithmic for Hangul: these jamo combine with the one before.
_HANGUL_COMPOSERS = "\u1161-\u1175\u11a8-\u11c2"


def _char_class(chars: list[int]) -> str:
    """A regex character class body for BMP code points `chars` (sorted), as ranges."""
    parts: list[str] = []
    i = 0
    while i < len(chars):
        j = i
        while j + 1 < len(chars) and chars[j + 1] == chars[j] + 1:
            j += 1
        lo, hi = chars[i], chars[j]
        parts.append(f"\\u{lo:04x}" if lo == hi else f"\\u{lo:04x}-\\u{hi:04x}")
        i = j + 1
    return "".join(parts)


@lru_cache(maxsize=4)
def _unstable_re(form: str, keep_punctuation: bool) -> re.Pattern[str]:
    """Runs of characters that `form` may change.

    A BMP character is unstable when normalizing it alone changes it, when it is a combining
    mark (canonical reordering) or when it composes with the character before it (é = e +
    U+0301). Every supplementary character counts as unstable: they are rare, and one range
    keeps the class a fast bitmap (hundreds of exact astral ranges make re scan them one by
    one). Built on first use by scanning the BMP (~20 ms).
    """
    kept = {ord(c) for c in CJK_PUNCTUATION_KEPT} if keep_punctuation else set()
    chars: set[int] = set()
    for cp in range(0x10000):
        ch = chr(cp)
        if cp in kept or 0xD800 <= cp <= 0xDFFF:
            continue
        if unicodedata.combining(ch) or unicodedata.normalize(form, ch) != ch:
            chars.add(cp)
        decomp = unicodedata.decomposition(ch)
        if decomp and not decomp.startswith("<"):
            parts = decomp.split()
            if len(parts) == 2 and int(parts[1], 16) < 0x10000:
                chars.add(int(parts[1], 16))
    body = _char_class(sorted(chars)) + _HANGUL_COMPOSERS + "\\U00010000-\\U0010ffff"
    return re.compile(f"[{body}]+")


def normalize_unicode_text(text: str, form: str = "NFKC", keep_cjk_punctuation: bool = True) -> str:
    """`text` in Unicode normal form `form` (NFKC or NFC), with CJK radical look-alikes folded
    under NFKC; with `keep_cjk_punctuation`, the full-width punctuation of Chinese text
    (`CJK_PUNCTUATION_KEPT`) is left as is.

    NFKC turns full-width letters/digits into ASCII and Kangxi radicals into ideographs.
    Returns `text` itself when it is already normal (always for ASCII text). Otherwise the
    result equals `unicodedata.normalize(form, text)` (with the kept punctuation restored):
    only the runs of unstable characters are normalized, each with the character before it
    so compositions see their base; the text between runs is normal already.
    """
    if text.isascii():
        return text
    rx = _unstable_re(form, keep_cjk_punctuation)
    m = rx.search(text)
    if m is not None:
        kept = CJK_PUNCTUATION_KEPT if keep_cjk_punctuation else ""
        pieces: list[str] = []
        last = 0
        while m is not None:
            start, end = m.span()
            if start > last and text[start - 1] not in kept:
                start -= 1
            pieces.append(text[last:start])
            pieces.append(unicodedata.normalize(form, text[start:end]))
            last = end
            m = rx.search(text, end)
        pieces.append(text[last:])
        out = "".join(pieces)
        text = text if out == text else out
    if form == "NFKC" and _RADICAL_RE.search(text):
        text = _RADICAL_RE.sub(_fold_radical, text)
    return text


# C0 (but \t and \n) and C1 controls, DEL, zero-width space/joiners, word joiner and BOM.
_CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff]+")
_CR_RE = re.compile("\r\n?")


def remove_control_chars_text(text: str) -> str:
    """`text` without control characters (except newline and tab) and zero-width characters.

    Carriage returns become newlines first (CRLF and old-Mac CR line ends), so removing the
    control character never glues two lines together.
    """
    if "\r" in text:
        text = _CR_RE.sub("\n", text)
    # Fast path (~1 GB/s vs ~200 MB/s for the regex): with newlines as spaces, a printable
    # string has no control, format (zero-width) or unusual space characters at all.
    if (text.replace("\n", " ") if "\n" in text else text).isprintable():
        return text
    return _CONTROL_RE.sub("", text)


# Elements whose content is never text a reader sees.
_INVISIBLE_RE = re.compile(
    r"<(script|style|noscript|template|svg|head)\b[^>]*>.*?</\1\s*>|<!--.*?-->|<!\[CDATA\[.*?\]\]>",
    re.IGNORECASE | re.DOTALL,
)
_BLOCK_TAGS = (
    "address|article|aside|blockquote|dd|div|dl|dt|figcaption|figure|footer|form|h[1-6]|header"
    "|hr|li|main|nav|ol|p|pre|section|table|tbody|thead|tfoot|tr|ul|title|caption"
)
# <br> and the end of a block become a line break, so the text keeps its lines. <p> opens with
# one too: paragraphs end up separated by a blank line, and an unclosed <p> (old HTML) still
# breaks the line.
_BREAK_RE = re.compile(
    rf"<br\s*/?>|</(?:{_BLOCK_TAGS})\s*>|<(?:p|hr)(?:\s[^<>]*)?/?>",
    re.IGNORECASE,
)
_CELL_RE = re.compile(r"</t[dh]\s*>", re.IGNORECASE)
# Only real HTML element names (plus namespaced ones like Word's <o:p>) count as tags, so
# plain text such as "if a<b and c>d" is left alone.
_TAG_NAMES = (
    "a|abbr|acronym|address|area|article|aside|audio|b|base|basefont|bdi|bdo|big|blockquote"
    "|body|br|button|canvas|caption|center|cite|code|col|colgroup|data|datalist|dd|del|details"
    "|dfn|dialog|dir|div|dl|dt|em|embed|fieldset|figcaption|figure|font|footer|form|frame"
    "|frameset|h[1-6]|head|header|hgroup|hr|html|i|iframe|img|input|ins|kbd|label|legend|li"
    "|link|main|map|mark|menu|meta|meter|nav|nobr|noscript|object|ol|optgroup|option|output|p"
    "|param|picture|pre|progress|q|rp|rt|ruby|s|samp|script|section|select|small|source|span"
    "|strike|strong|style|sub|summary|sup|svg|table|tbody|td|template|textarea|tfoot|th|thead"
    "|time|title|tr|track|tt|u|ul|var|video|wbr|[a-z]+:[a-z][a-z0-9]*"
)
_TAG_RE = re.compile(
    rf"</?(?:{_TAG_NAMES})(?:\s[^<>]*)?/?>|<!DOCTYPE[^<>]*>|<\?xml[^<>]*\?>",
    re.IGNORECASE,
)

# Markup only counts as HTML when something unmistakable is present (an end tag, <br>, <img>,
# a self-closing tag, a comment, a doctype): "if a<b and c>d" is valid-looking HTML but plain
# text, and must not lose "b and c".
_HTML_HINT_RE = re.compile(r"</[a-z]|<(?:br|img|hr|p|meta|link)\b|/>|<!", re.IGNORECASE)


def strip_html_text(text: str) -> str:
    """`text` with HTML removed: tags dropped, scripts/styles/comments dropped with their
    content, entities decoded (`&amp;` `&nbsp;` `&#x4e2d;`), and `<br>` / block ends (`</p>`,
    `</div>`, `</li>`, ...) turned into newlines, table cells into spaces.

    Regex-based (no DOM), so malformed markup degrades gracefully; text without `<` or `&` is
    returned as is, and so is text with no unmistakable markup (an end tag, `<br>`, `<p>`,
    `<img>`, a self-closing tag, a comment or doctype), so "if a<b and c>d" keeps its words.
    Entities are decoded last, so an escaped `&lt;b&gt;` survives as `<b>`.
    """
    if "<" in text and _HTML_HINT_RE.search(text):
        text = _INVISIBLE_RE.sub("", text)
        text = _BREAK_RE.sub("\n", text)
        text = _CELL_RE.sub(" ", text)
        text = _TAG_RE.sub("", text)
    if "&" in text:
        text = html.unescape(text)
    return text


# Horizontal whitespace other than the plain space: tab, NBSP, the Unicode space separators,
# ideographic space. Runs of two plain spaces are found with `in` (a C substring search).
_ODD_SPACE = "\t\f\v\xa0\u1680\u2000-\u200a\u202f\u205f\u3000"
_ODD_SPACE_RE = re.compile(f"[{_ODD_SPACE}]")
_SPACES_RE = re.compile(" {2,}")
_BLANK_LINES_RE = re.compile("\n{3,}")


def normalize_whitespace_text(text: str) -> str:
    """`text` with runs of horizontal whitespace (tabs, NBSP, U+3000 ideographic space and
    the other Unicode spaces) collapsed to one space, spaces at line starts/ends removed,
    3+ consecutive newlines collapsed to 2 (one blank line), and the ends stripped.

    Expects `\\r` already turned into `\\n` (see `remove_control_chars_text`); a lone `\\r`
    is treated as a line break here too. Returns `text` itself when nothing changes.
    """
    if "\r" in text:
        text = _CR_RE.sub("\n", text)
    # Two simple passes (odd spaces to " ", then runs of " " to one) run ~4x faster than one
    # regex with an alternation.
    if _ODD_SPACE_RE.search(text):
        text = _ODD_SPACE_RE.sub(" ", text)
    if "  " in text:
        text = _SPACES_RE.sub(" ", text)
    # After the collapse a line edge has at most one space: plain replaces remove it.
    if " \n" in text:
        text = text.replace(" \n", "\n")
    if "\n " in text:
        text = text.replace("\n ", "\n")
    if "\n\n\n" in text:
        text = _BLANK_LINES_RE.sub("\n\n", text)
    return text.strip()


@register
class NormalizeUnicode(Operator):
    """Unicode normalization (NFKC by default): full-width forms to ASCII, compatibility and
    radical forms of CJK characters to the ideographs they stand for."""

    name: ClassVar[str] = "normalize_unicode"
    form: Literal["NFKC", "NFC"] = Field(
        default="NFKC",
        description="Normal form: NFKC folds compatibility forms (full-width ＡＢＣ１２３, Kangxi "
        "radicals ⼀); NFC only composes accents and keeps those forms.",
    )
    keep_cjk_punctuation: bool = Field(
        default=True,
        description="Keep the full-width punctuation Chinese text is written with (，！？：；（）"
        "…) instead of letting NFKC turn it into ASCII; full-width letters and digits are "
        "folded either way.",
    )

    def process(self, batch: list[Record]) -> list[Record | Drop]:
        """Each record with its texts normalized (the same object when already normal)."""
        form, keep = self.form, self.keep_cjk_punctuation

        def fn(text: str) -> str:
            return normalize_unicode_text(text, form, keep)

        map_texts = self.kind.map_texts
        return [map_texts(r, fn) for r in batch]


@register
class RemoveControlChars(Operator):
    """Remove control characters (keeping newline and tab) and zero-width characters."""

    name: ClassVar[str] = "remove_control_chars"

    def process(self, batch: list[Record]) -> list[Record | Drop]:
        """Each record without control/zero-width characters in its texts."""
        map_texts = self.kind.map_texts  # bound once: `kind` is a pydantic private attr
        return [map_texts(r, remove_control_chars_text) for r in batch]


@register
class StripHtml(Operator):
    """Strip HTML markup, keeping the visible text and its line structure."""

    name: ClassVar[str] = "strip_html"

    def process(self, batch: list[Record]) -> list[Record | Drop]:
        """Each record with HTML stripped from its texts."""
        map_texts = self.kind.map_texts  # bound once: `kind` is a pydantic private attr
        return [map_texts(r, strip_html_text) for r in batch]


@register
class NormalizeWhitespace(Operator):
    """Collapse runs of spaces (incl. NBSP and U+3000), trim lines, limit blank lines."""

    name: ClassVar[str] = "normalize_whitespace"

    def process(self, batch: list[Record]) -> list[Record | Drop]:
        """Each record with whitespace normalized in its texts."""
        map_texts = self.kind.map_texts  # bound once: `kind` is a pydantic private attr
        return [map_texts(r, normalize_whitespace_text) for r in batch]
