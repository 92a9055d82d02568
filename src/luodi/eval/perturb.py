"""Input perturbations for robustness evaluation, each registered by name in `PERTURBATIONS`.

- `typo`: one typing slip in a Latin word: a letter replaced by a neighbouring QWERTY key,
  dropped (words of two or more letters) or doubled;
- `swap`: two adjacent, different, non-space characters exchanged (CJK characters too);
- `width`: one character turned from half-width ASCII to full-width or back
  (`A`↔`Ａ`, `1`↔`１`, `,`↔`，`, space↔ideographic space);
- `punct`: one punctuation edit: a Chinese mark turned into its English counterpart or back
  (`，`↔`,`, `。`↔`.`, `？`↔`?` ...), a mark removed, or a mark added;
- `synonym`: one word replaced by a synonym from a table (`DEFAULT_SYNONYMS`, about sixty
  Chinese and English pairs written for this project, optionally extended from a file);
- `noise`: one random character inserted (a space, a letter, a digit, a symbol or a common
  Chinese particle).

`perturb(text, kind, rng)` is a pure function of its arguments: the same text, kind and
generator state give the same result. `rng_for(seed, record_id, kind, copy)` makes the
generator for one perturbed copy, so a copy depends only on (seed, record id, kind, copy).
Every perturbation changes the text whenever a change of its kind is possible; the text is
returned unchanged only when none is (no Latin letter for `typo`, no two different adjacent
characters for `swap`, no convertible character for `width`, no table word for `synonym`,
an empty text for `punct` and `noise`).
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from luodi.errors import BadInputError
from luodi.registry import Registry

# -- synonyms ----------------------------------------------------------------------------
# Pairs chosen to keep a sentence's meaning in ordinary enterprise questions (office, IT,
# HR, finance); a word may appear in several pairs, its alternatives are all its partners.
_SYNONYM_PAIRS: tuple[tuple[str, str], ...] = (
    # English
    ("help", "assist"),
    ("buy", "purchase"),
    ("start", "begin"),
    ("finish", "complete"),
    ("big", "large"),
    ("small", "little"),
    ("quick", "fast"),
    ("show", "display"),
    ("get", "obtain"),
    ("need", "require"),
    ("choose", "select"),
    ("answer", "reply"),
    ("mistake", "error"),
    ("problem", "issue"),
    ("fix", "repair"),
    ("price", "cost"),
    ("company", "firm"),
    ("staff", "employees"),
    ("ask", "inquire"),
    ("use", "utilize"),
    ("allow", "permit"),
    ("check", "verify"),
    ("holiday", "vacation"),
    ("document", "file"),
    ("delete", "remove"),
    ("change", "modify"),
    ("find", "locate"),
    ("tell", "inform"),
    ("enough", "sufficient"),
    ("maybe", "perhaps"),
    ("often", "frequently"),
    ("salary", "wages"),
    # Chinese
    ("帮助", "协助"),
    ("购买", "采购"),
    ("启动", "开启"),
    ("结束", "终止"),
    ("重要", "关键"),
    ("错误", "差错"),
    ("价格", "价钱"),
    ("公司", "企业"),
    ("员工", "职员"),
    ("经理", "主管"),
    ("选择", "挑选"),
    ("回答", "答复"),
    ("显示", "展示"),
    ("获得", "取得"),
    ("检查", "核查"),
    ("删除", "移除"),
    ("修改", "更改"),
    ("查找", "寻找"),
    ("足够", "充足"),
    ("也许", "或许"),
    ("经常", "常常"),
    ("马上", "立即"),
    ("办法", "方法"),
    ("假期", "休假"),
    ("工资", "薪水"),
    ("电脑", "计算机"),
    ("客户", "顾客"),
    ("联系", "联络"),
    ("规定", "规则"),
    ("提交", "递交"),
    ("审批", "审核"),
    ("文件", "文档"),
    ("密码", "口令"),
    ("账号", "账户"),
    ("目前", "当前"),
)

_LATIN = re.compile(r"[A-Za-z]")
_NOT_LATIN_BEFORE, _NOT_LATIN_AFTER = r"(?<![A-Za-z])", r"(?![A-Za-z])"


class SynonymTable:
    """Groups of interchangeable words; `alternatives(word)` are the others of its groups.

    English words match whole words case-insensitively (a capitalised word gets a
    capitalised synonym); Chinese words match anywhere (Chinese has no spaces to bound them).
    """

    def __init__(self, groups: Iterable[Iterable[str]]) -> None:
        self._alt: dict[str, list[str]] = {}
        for group in groups:
            words = [w.strip() for w in group if w.strip()]
            for w in words:
                known = self._alt.setdefault(w.lower(), [])
                known += [o for o in words if o.lower() != w.lower() and o not in known]
        words = sorted(self._alt, key=lambda w: (-len(w), w))  # longest first: 计算机 before 计算
        latin = [re.escape(w) for w in words if _LATIN.match(w)]
        other = [re.escape(w) for w in words if not _LATIN.match(w)]
        parts = []
        if latin:
            parts.append(f"{_NOT_LATIN_BEFORE}(?:{'|'.join(latin)}){_NOT_LATIN_AFTER}")
        if other:
            parts.append("|".join(other))
        self._pattern = re.compile("|".join(parts), re.IGNORECASE) if parts else None

    def __len__(self) -> int:
        return len(self._alt)

    def alternatives(self, word: str) -> list[str]:
        """The synonyms of `word` (case-insensitive), in table order; [] when it has none."""
        return list(self._alt.get(word.lower(), []))

    def occurrences(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of every non-overlapping table word in `text`, left to right."""
        if self._pattern is None:
            return []
        return [m.span() for m in self._pattern.finditer(text)]

    def extended(self, groups: Iterable[Iterable[str]]) -> SynonymTable:
        """A new table with this table's groups and `groups`."""
        mine = [[w, *alts] for w, alts in self._alt.items()]
        return SynonymTable([*mine, *groups])


DEFAULT_SYNONYMS = SynonymTable(_SYNONYM_PAIRS)


def load_synonyms(
    path: Path | str, *, base: SynonymTable | None = DEFAULT_SYNONYMS
) -> SynonymTable:
    """A table from a UTF-8 file (one group per line, words separated by commas or tabs;
    blank lines and lines starting with `#` are ignored), added to `base` (None: the file only).

    BadInputError naming the file and line for a missing file or a line with fewer than two
    words (a group needs something to swap with).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read synonym file {path}: {exc}") from None
    groups: list[list[str]] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        words = [w.strip() for w in re.split(r"[,\t，]", line) if w.strip()]
        if len(words) < 2:
            raise BadInputError(
                f"{path} line {n}: a synonym group needs at least two words separated by "
                f"commas or tabs, got {line.strip()!r}"
            )
        groups.append(words)
    return base.extended(groups) if base is not None else SynonymTable(groups)


# -- the perturbations -------------------------------------------------------------------
@dataclass(frozen=True)
class PerturbContext:
    """What a perturbation may need besides the text and the generator."""

    synonyms: SynonymTable = DEFAULT_SYNONYMS


Perturbation = Callable[[str, random.Random, PerturbContext], str]
PERTURBATIONS: Registry[Perturbation] = Registry("perturbation")

_QWERTY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _keyboard_neighbours() -> dict[str, str]:
    """Keys left, right, above and below each letter on a QWERTY keyboard."""
    pos = {c: (r, i) for r, row in enumerate(_QWERTY_ROWS) for i, c in enumerate(row)}
    out = {}
    for c, (r, i) in pos.items():
        # Each row sits half a key right of the one above: the keys above are i and i + 1,
        # the keys below i - 1 and i.
        near = {(r, i - 1), (r, i + 1), (r - 1, i), (r - 1, i + 1), (r + 1, i - 1), (r + 1, i)}
        out[c] = "".join(
            sorted(
                _QWERTY_ROWS[rr][j]
                for rr, j in near
                if 0 <= rr < len(_QWERTY_ROWS) and 0 <= j < len(_QWERTY_ROWS[rr])
            )
        )
    return out


NEIGHBOURS = _keyboard_neighbours()


@PERTURBATIONS.register("typo")
def typo(text: str, rng: random.Random, ctx: PerturbContext) -> str:
    """A neighbouring key, a dropped letter or a doubled letter in a Latin word."""
    words = [m.span() for m in re.finditer(r"[A-Za-z]+", text)]
    if not words:
        return text
    start, end = rng.choice(words)
    i = rng.randrange(start, end)
    ops = ["neighbour", "double"] + (["drop"] if end - start >= 2 else [])
    op = rng.choice(ops)
    c = text[i]
    if op == "drop":
        return text[:i] + text[i + 1 :]
    if op == "double":
        return text[:i] + c + text[i:]
    sub = rng.choice(NEIGHBOURS[c.lower()])
    return text[:i] + (sub.upper() if c.isupper() else sub) + text[i + 1 :]


@PERTURBATIONS.register("swap")
def swap(text: str, rng: random.Random, ctx: PerturbContext) -> str:
    """Two adjacent non-space characters that differ, exchanged."""
    spots = [
        i
        for i in range(len(text) - 1)
        if text[i] != text[i + 1] and not text[i].isspace() and not text[i + 1].isspace()
    ]
    if not spots:
        return text
    i = rng.choice(spots)
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


_FULL_OFFSET = 0xFEE0  # U+FF01..U+FF5E are U+0021..U+007E shifted by this
_IDEOGRAPHIC_SPACE = "\u3000"


def to_fullwidth_char(c: str) -> str:
    """The full-width form of a printable ASCII character or space; other characters as is."""
    if c == " ":
        return _IDEOGRAPHIC_SPACE
    if "!" <= c <= "~":
        return chr(ord(c) + _FULL_OFFSET)
    return c


def to_halfwidth_char(c: str) -> str:
    """The ASCII form of a full-width character (U+FF01–U+FF5E) or ideographic space."""
    if c == _IDEOGRAPHIC_SPACE:
        return " "
    if "\uff01" <= c <= "\uff5e":
        return chr(ord(c) - _FULL_OFFSET)
    return c


def to_fullwidth(text: str) -> str:
    """Every printable ASCII character and space of `text` in its full-width form."""
    return "".join(to_fullwidth_char(c) for c in text)


def to_halfwidth(text: str) -> str:
    """Every full-width ASCII variant and ideographic space of `text` in its ASCII form."""
    return "".join(to_halfwidth_char(c) for c in text)


@PERTURBATIONS.register("width")
def width(text: str, rng: random.Random, ctx: PerturbContext) -> str:
    """One character switched between half-width and full-width (either direction)."""
    spots = [
        i for i, c in enumerate(text) if to_fullwidth_char(c) != c or to_halfwidth_char(c) != c
    ]
    if not spots:
        return text
    i = rng.choice(spots)
    c = text[i]
    new = to_fullwidth_char(c) if to_fullwidth_char(c) != c else to_halfwidth_char(c)
    return text[:i] + new + text[i + 1 :]


# Chinese mark -> English mark; the reverse map takes the first Chinese mark of each.
_ZH_EN_PUNCT = {
    "，": ",",
    "。": ".",
    "！": "!",
    "？": "?",
    "：": ":",
    "；": ";",
    "（": "(",
    "）": ")",
    "“": '"',
    "”": '"',
    "‘": "'",
    "’": "'",
    "、": ",",
    "【": "[",
    "】": "]",
    "《": "<",
    "》": ">",
}
_EN_ZH_PUNCT = {en: zh for zh, en in reversed(list(_ZH_EN_PUNCT.items()))}
_ADD_ZH, _ADD_EN = "，。、！？", ",.!?;"
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def _between_digits(text: str, i: int) -> bool:
    """True when text[i] sits between two digits (a decimal point, a thousands separator):
    changing it would change a number, not punctuation."""
    return 0 < i < len(text) - 1 and text[i - 1].isdigit() and text[i + 1].isdigit()


@PERTURBATIONS.register("punct")
def punct(text: str, rng: random.Random, ctx: PerturbContext) -> str:
    """A punctuation mark switched between Chinese and English, removed, or added."""
    if not text:
        return text
    marks = [
        i
        for i, c in enumerate(text)
        if unicodedata.category(c).startswith("P") and not _between_digits(text, i)
    ]
    convertible = [i for i in marks if text[i] in _ZH_EN_PUNCT or text[i] in _EN_ZH_PUNCT]
    ops = ["add"] + (["remove"] if marks else []) + (["convert"] if convertible else [])
    op = rng.choice(ops)
    if op == "convert":
        i = rng.choice(convertible)
        c = text[i]
        return text[:i] + (_ZH_EN_PUNCT.get(c) or _EN_ZH_PUNCT[c]) + text[i + 1 :]
    if op == "remove":
        i = rng.choice(marks)
        return text[:i] + text[i + 1 :]
    # Insert next to no digit (a mark inside or beside a number changes the number), in the
    # script of the character before it; a text of digits only gets the mark at its end.
    spots = [
        i
        for i in range(1, len(text) + 1)
        if not (text[i - 1].isdigit() or (i < len(text) and text[i].isdigit()))
    ] or [len(text)]
    i = rng.choice(spots)
    before = text[i - 1] if i else text[0]
    mark = rng.choice(_ADD_ZH if _CJK.match(before) else _ADD_EN)
    return text[:i] + mark + text[i:]


@PERTURBATIONS.register("synonym")
def synonym(text: str, rng: random.Random, ctx: PerturbContext) -> str:
    """One word of the synonym table replaced by one of its synonyms."""
    spots = ctx.synonyms.occurrences(text)
    if not spots:
        return text
    start, end = rng.choice(spots)
    word = text[start:end]
    new = rng.choice(ctx.synonyms.alternatives(word))
    if word[:1].isupper():
        new = new[:1].upper() + new[1:]
    return text[:start] + new + text[end:]


_NOISE_ASCII = " abcdefghijklmnopqrstuvwxyz0123456789~#*-_/"
_NOISE_ZH = "的了啊呢吧嗯哦"


@PERTURBATIONS.register("noise")
def noise(text: str, rng: random.Random, ctx: PerturbContext) -> str:
    """One random character (space, letter, digit, symbol; a Chinese particle in Chinese
    text) inserted at a random position."""
    if not text:
        return text
    pool = _NOISE_ASCII + (_NOISE_ZH if _CJK.search(text) else "")
    i = rng.randrange(len(text) + 1)
    return text[:i] + rng.choice(pool) + text[i:]


# -- entry points ------------------------------------------------------------------------
def rng_for(seed: int, record_id: str, kind: str, copy: int = 0) -> random.Random:
    """The generator of one perturbed copy: a function of (seed, record id, kind, copy) only
    (string seeds are hashed with SHA-512, independent of PYTHONHASHSEED)."""
    return random.Random(f"{seed}\0{record_id}\0{kind}\0{copy}")


def perturb(
    text: str,
    kind: str,
    rng: random.Random,
    *,
    edits: int = 1,
    synonyms: SynonymTable | None = None,
) -> str:
    """`text` with `edits` perturbations of `kind` applied one after the other.

    Deterministic given the generator's state. The result differs from `text` whenever a
    perturbation of this kind is possible (see the module docstring): edits that happen to
    undo each other are followed by one more. BadInputError for an unknown kind or edits < 1.
    """
    if edits < 1:
        raise BadInputError(f"edits must be at least 1, got {edits}")
    fn = PERTURBATIONS.get(kind)
    ctx = PerturbContext(synonyms if synonyms is not None else DEFAULT_SYNONYMS)
    out = text
    for _ in range(edits):
        out = fn(out, rng, ctx)
    if out == text and edits > 1:
        out = fn(text, rng, ctx)  # a single edit always changes a text it can change
    return out


__all__ = [
    "DEFAULT_SYNONYMS",
    "NEIGHBOURS",
    "PERTURBATIONS",
    "PerturbContext",
    "Perturbation",
    "SynonymTable",
    "load_synonyms",
    "perturb",
    "rng_for",
    "to_fullwidth",
    "to_halfwidth",
]
