"""Normalising user ratings of any scale to 0–1 (1 = best).

Ratings arrive as 1–5 stars, 0–1 scores, 1–10 or 0–100 scores, thumbs up/down words,
👍/👎, booleans, star strings (★★★★☆) or fractions ("4/5"). Each file uses one scale, so
numeric scales are inferred per file from its values ("auto"), or given explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from luodi.errors import BadInputError

RatingScale = Literal["auto", "0-1", "1-5", "1-10", "0-10", "0-100", "-1-1", "thumbs"]

_UP = {"👍", "up", "thumbs_up", "thumbsup", "thumb_up", "good", "like", "yes", "true", "+1",
       "positive", "赞", "好", "好评", "满意", "有用", "是"}  # fmt: skip
_DOWN = {"👎", "down", "thumbs_down", "thumbsdown", "thumb_down", "bad", "dislike", "no", "false",
         "-1", "negative", "踩", "差", "差评", "不满意", "没用", "否"}  # fmt: skip
_SCALES: dict[str, tuple[float, float]] = {
    "0-1": (0.0, 1.0),
    "1-5": (1.0, 5.0),
    "1-10": (1.0, 10.0),
    "0-10": (0.0, 10.0),
    "0-100": (0.0, 100.0),
    "-1-1": (-1.0, 1.0),
}


def _symbolic(value: object) -> float | None:
    """Thumbs words, emoji, booleans, star strings and fractions; None if not symbolic."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if not isinstance(value, str):
        return None
    s = value.strip().lower()
    if s in _UP or s.startswith("👍"):
        return 1.0
    if s in _DOWN or s.startswith("👎"):
        return 0.0
    if s and set(s) <= {"★", "☆"}:
        filled, total = s.count("★"), len(s)
        return (filled - 1) / (total - 1) if total > 1 else float(filled)
    if "/" in s:
        num, _, den = s.partition("/")
        try:
            n, d = float(num), float(den)
        except ValueError:
            return None
        if d > 0 and 0 <= n <= d:
            return n / d
    return None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def is_missing(value: object) -> bool:
    """True for absent ratings: None, empty strings, NaN."""
    if value is None:
        return True
    if isinstance(value, float) and value != value:
        return True
    return isinstance(value, str) and not value.strip()


def infer_scale(values: Sequence[float]) -> str:
    """The numeric scale that fits `values` best (they come from one file)."""
    lo, hi = min(values), max(values)
    if lo < 0:
        if lo >= -1 and hi <= 1:
            return "-1-1"
        raise BadInputError(f"ratings between {lo:g} and {hi:g} fit no known scale")
    if hi <= 1:
        return "0-1"
    if hi <= 5 and lo >= 1:
        return "1-5"
    if hi <= 10:
        return "1-10" if lo >= 1 else "0-10"
    if hi <= 100:
        return "0-100"
    raise BadInputError(f"ratings up to {hi:g} fit no known scale; pass the scale explicitly")


def normalise(values: Sequence[object], scale: RatingScale = "auto") -> list[float | None]:
    """Map raw ratings of one file to 0–1 (None where missing or unreadable).

    Symbolic ratings (thumbs, emoji, stars, fractions) map directly; numbers use `scale`, or a
    scale inferred from all numeric values when `scale` is "auto".
    """
    out: list[float | None] = []
    numeric = [n for v in values if _symbolic(v) is None and (n := _number(v)) is not None]
    if scale == "auto":
        scale_name = infer_scale(numeric) if numeric else "0-1"
    elif scale == "thumbs":
        scale_name = "0-1"
    else:
        scale_name = scale
    lo, hi = _SCALES[scale_name]
    for v in values:
        if is_missing(v):
            out.append(None)
            continue
        sym = _symbolic(v)
        if sym is not None:
            out.append(sym)
            continue
        n = _number(v)
        if n is None or not lo <= n <= hi:
            out.append(None)
            continue
        out.append((n - lo) / (hi - lo))
    return out
