"""Decode the bytes of a text-ish file whatever its encoding (UTF-8/16/32, GBK/GB18030, ...).

Order of attempts, cheapest and surest first: a byte-order mark; strict UTF-8; then
charset-normalizer's guess, except that Chinese text is decoded as GB18030 (a superset of
GB2312 and GBK) whenever its bytes decode cleanly that way and the guess is a CJK codec or a
single-byte codec that the text does not look like. Short GBK text is often guessed as Big5,
CP949 or a Windows code page, which would turn it into mojibake.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from charset_normalizer import from_bytes

from luodi.data.loaders.base import FileRejected

# UTF-32 marks first: the UTF-32-LE mark begins with the UTF-16-LE one.
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# Guesses charset-normalizer makes for GBK bytes (Chinese and Korean double-byte codecs share
# byte ranges); text that also decodes as GB18030 is taken to be Chinese.
_CJK_GUESSES = frozenset(
    {"gb2312", "gbk", "gb18030", "hz", "big5", "big5hkscs", "cp950", "cp949", "euc_kr", "johab"}
)

# Japanese guesses are kept: Shift-JIS text often decodes as (wrong) GB18030 too.
_JAPANESE_GUESSES = frozenset(
    {"cp932", "shift_jis", "shift_jis_2004", "shift_jisx0213", "euc_jp", "euc_jis_2004"}
    | {"euc_jisx0213", "iso2022_jp", "iso2022_jp_1", "iso2022_jp_2", "iso2022_jp_3"}
)

_UNLIKELY = re.compile(r"[\x00-\x08\x0e-\x1f\ue000-\uf8ff]")
# Enough text to judge how ideographs sit among letters without scanning a huge file.
_SAMPLE_CHARS = 200_000


def read_text(path: Path) -> str:
    """The text of the file at `path`, decoded as described in this module, newlines as "\\n".

    A byte-order mark is removed; "\\r\\n" and lone "\\r" become "\\n" (as `open()` does in
    text mode). Raises FileRejected when no encoding fits (binary data).
    """
    return decode_bytes(Path(path).read_bytes())


def decode_bytes(data: bytes) -> str:
    """Decode `data` as `read_text` does (BOM, strict UTF-8, GB18030 preference, detection)."""
    text = _decode(data)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _decode(data: bytes) -> str:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(encoding)
            except UnicodeDecodeError:
                # A stray mark-like prefix on other data: fall through to detection.
                break
    # NUL bytes are valid UTF-8 but mean UTF-16/32 without a mark (or binary): detect instead.
    if b"\x00" not in data:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    best = from_bytes(data).best()
    chinese = _as_gb18030(data)
    if chinese is not None and _prefer_chinese(best.encoding if best else None, chinese):
        return chinese
    if best is None:
        raise FileRejected("not a text file: no text encoding fits its bytes")
    return str(best)


def _as_gb18030(data: bytes) -> str | None:
    """The GB18030 decoding of `data` if it is clean (no private-use or control characters)."""
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError:
        return None
    # Private-use code points come out of Big5 bytes read as GB18030, controls out of binary
    # data; neither occurs in real Chinese text.
    if _UNLIKELY.search(text):
        return None
    return text


def _is_cjk(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\U00020000" <= ch <= "\U0003134f"


def _prefer_chinese(guess: str | None, text: str) -> bool:
    """Whether a clean GB18030 decoding beats charset-normalizer's `guess` for this text."""
    if guess is None or guess in _CJK_GUESSES:
        return True
    if guess in _JAPANESE_GUESSES or guess.startswith(("utf", "ascii")):
        return False
    # A single-byte guess (cp1252, latin-1, ...). Latin text read as GB18030 pairs an accented
    # letter with the next byte, leaving ideographs glued to ASCII letters ("M黮ler"); real
    # Chinese puts ideographs next to each other or to punctuation.
    text = text[:_SAMPLE_CHARS]
    cjk = glued = 0
    last = len(text) - 1
    for i, ch in enumerate(text):
        if not _is_cjk(ch):
            continue
        cjk += 1
        before = text[i - 1] if i > 0 else ""
        after = text[i + 1] if i < last else ""
        if (before.isascii() and before.isalpha()) or (after.isascii() and after.isalpha()):
            glued += 1
    return cjk > 0 and glued * 2 < cjk
