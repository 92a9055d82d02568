"""What a guard check decides: the matches, the strongest action, the text to use."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

Action = Literal["warn", "mask", "block"]
VerdictAction = Literal["allow", "warn", "mask", "block"]
STRENGTH: dict[str, int] = {"allow": 0, "warn": 1, "mask": 2, "block": 3}
LOG_MATCHES = 50
"""At most this many matches go into a log entry (the count of the rest is noted)."""


@dataclass(frozen=True, slots=True)
class Match:
    """One rule matching one span of the original text. Never holds the matched PII text:
    `term` is the lexicon term (normalised) or the injection pattern id, None for PII.

    A plain dataclass rather than a model: a text full of PII yields dozens of matches and
    building them is on every request's path (pydantic still validates and serialises it
    as a field of Verdict)."""

    rule: str  # id of the policy rule that matched
    action: Action  # that rule's action
    category: str  # e.g. lexicon.violence, pii.phone, injection, jailbreak
    start: int  # span in the original text, in characters
    end: int  # exclusive
    term: str | None = None

    def to_log(self) -> dict[str, Any]:
        """The match as a JSON-safe dict (no `term` key for PII)."""
        out: dict[str, Any] = {
            "rule": self.rule,
            "action": self.action,
            "category": self.category,
            "start": self.start,
            "end": self.end,
        }
        if self.term is not None:
            out["term"] = self.term
        return out


class Verdict(BaseModel):
    """The guard's decision on one text. `text` may hold PII (when the action is not
    mask): log `to_log()`, never the verdict itself."""

    action: VerdictAction = Field(description="The strongest action over the matched rules.")
    categories: list[str] = Field(description="Categories matched, sorted.")
    matches: list[Match] = Field(description="What matched, in text order.")
    text: str = Field(
        description="The text to use: masked when action is 'mask', otherwise the input "
        "unchanged (for a blocked stream: what was emitted before the block)."
    )

    def to_log(self) -> dict[str, Any]:
        """A JSON-safe summary for the request log with no PII in it: action, categories and
        each match's rule, category, span and lexicon term or pattern id (never the text)."""
        out: dict[str, Any] = {
            "action": self.action,
            "categories": list(self.categories),
            "matches": [m.to_log() for m in self.matches[:LOG_MATCHES]],
        }
        if len(self.matches) > LOG_MATCHES:
            out["more_matches"] = len(self.matches) - LOG_MATCHES
        return out


def placeholder(category: str) -> str:
    """The mask for a category: the last part upper-cased ("pii.phone" -> "[PHONE]",
    "lexicon.abuse" -> "[ABUSE]"), the data stage's placeholders for PII."""
    return f"[{category.rsplit('.', 1)[-1].upper()}]"


def apply_masks(text: str, spans: Iterable[tuple[int, int, str]], offset: int = 0) -> str:
    """`text` with each span (start, end, category) replaced by its placeholder; spans are
    positions in a larger text that `text` starts at `offset` of. Overlapping spans become
    one placeholder, the category of the one starting first (the longest on a tie); spans
    that only touch stay separate."""
    ordered = sorted(spans, key=lambda s: (s[0], -s[1]))
    if not ordered:
        return text
    out: list[str] = []
    last = 0
    i = 0
    while i < len(ordered):
        start, end, cat = ordered[i]
        i += 1
        while i < len(ordered) and ordered[i][0] < end:
            end = max(end, ordered[i][1])
            i += 1
        out += [text[last : start - offset], placeholder(cat)]
        last = end - offset
    out.append(text[last:])
    return "".join(out)


def make_verdict(matches: list[Match], text: str) -> Verdict:
    """The verdict over `matches` (sorted here): the strongest action; `text` as given."""
    matches.sort(key=lambda m: (m.start, m.end, m.rule, m.category))
    action = max((m.action for m in matches), key=STRENGTH.__getitem__, default="allow")
    return Verdict.model_construct(
        action=action,
        categories=sorted({m.category for m in matches}),
        matches=matches,
        text=text,
    )
