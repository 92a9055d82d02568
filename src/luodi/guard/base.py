"""What the guard's checks share: a hit, the detector protocol and the registry of checks.

A check ("lexicon", "pii", "injection") is built from a policy into a detector. Detectors
work on normalised text (luodi.guard.normalize) and report hits as spans of it; the policy
maps them back to the original text. The stream guard needs two more facts from each
detector: how far back from a scan position it looks (`context`) and from where on a hit
could still change when more text arrives (`stable_before`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from luodi.registry import Registry

if TYPE_CHECKING:
    from luodi.guard.policy import GuardPolicy


class Hit(NamedTuple):
    """One match of a detector in normalised text: [start, end), a full category name
    ("lexicon.violence", "pii.phone", "injection") and the lexicon term or pattern id that
    matched (None for PII: the matched text itself is never kept).

    A hit with the empty category is a shield, not a match: a span the detector consumed
    without reporting it (an allowed e-mail, a lexicon exception, a number that failed its
    checksum). A stream must not start a new scan inside one, or it would see a fragment
    ("ice@xinghe.com" of an allowed "service@xinghe.com") that a whole-text scan never sees.
    """

    start: int
    end: int
    category: str
    term: str | None


class Detector(Protocol):
    """A built check over normalised text."""

    context: int
    """How many characters before the scan position `find` may look at."""

    def categories(self) -> list[str]:
        """The full category names this detector can report."""
        ...

    def find(self, text: str, pos: int = 0) -> list[Hit]:
        """Every hit starting at or after `pos`, exactly as a scan of the whole `text` from
        its start would report them when `pos` is not inside or right after a hit."""
        ...

    def stable_before(self, text: str) -> int:
        """Hits starting before this index are final: no continuation of `text` changes
        them or adds one that starts before it."""
        ...


CheckFactory = Callable[["GuardPolicy", Path], Detector]
"""Builds a detector from a policy; relative file paths resolve against the Path."""

CHECKS: Registry[CheckFactory] = Registry("guard check")
