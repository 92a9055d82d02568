"""Lexicons: term lists by category, matched with one Aho-Corasick automaton per policy.

A lexicon file holds one term per line; `#` starts a comment (a whole line, or after
whitespace); a line starting with `!` is an exception: a hit lying inside an exception is
dropped ("!反洗钱" keeps the anti-money-laundering team's text clear of "洗钱"; exceptions
apply to every category). Terms are normalised like the text (NFKC, lower case), so "ＢＯＭＢ"
and "Bomb" match "bomb". A term that starts (ends) with a Latin letter or digit only
matches where the text has no such character just before (after) it: "ass" is not found in
"classic"; Chinese terms match anywhere ("炸弹" in "自制炸弹的方法").

The built-in lexicons (src/luodi/guard/lexicons/<category>.txt) were written for this project;
a policy adds an enterprise's own files per category.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import ahocorasick

from luodi.errors import BadInputError
from luodi.guard.base import CHECKS, Hit
from luodi.guard.normalize import is_word_char, normalize

if TYPE_CHECKING:
    from luodi.guard.policy import GuardPolicy

BUILTIN_DIR = Path(__file__).parent / "lexicons"
_COMMENT = re.compile(r"(?:^|\s)#.*$")
_CATEGORY = re.compile(r"[a-z][a-z0-9_]*\Z")


def builtin_categories() -> list[str]:
    """The categories of the built-in lexicons (file names without .txt)."""
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.txt"))


def check_category(name: str) -> str:
    """`name` when it is a valid category name (lower-case letters, digits, '_')."""
    if not _CATEGORY.match(name):
        raise BadInputError(
            f"lexicon category {name!r} must be lower-case letters, digits and '_' "
            "(starting with a letter)"
        )
    return name


@dataclass
class LexiconFile:
    """The terms and exceptions read from one file."""

    path: Path
    terms: list[str]
    exceptions: list[str]


def read_lexicon(path: Path) -> LexiconFile:
    """Read a lexicon file (UTF-8); a missing, unreadable or non-UTF-8 file is bad input
    naming it."""
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInputError(f"lexicon file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise BadInputError(f"lexicon file {path} is not UTF-8 text: {exc.reason}") from None
    except OSError as exc:
        raise BadInputError(f"cannot read lexicon file {path}: {exc.strerror}") from None
    terms: list[str] = []
    exceptions: list[str] = []
    for line in raw.splitlines():
        line = _COMMENT.sub("", line).strip()
        if not line:
            continue
        if line.startswith("!"):
            if line[1:].strip():
                exceptions.append(line[1:].strip())
        else:
            terms.append(line)
    return LexiconFile(Path(path), terms, exceptions)


class _Entry(NamedTuple):
    term: str  # normalised
    categories: tuple[str, ...]  # full names; empty for an exception
    left: bool  # needs a non-word character (or the text start) before it
    right: bool  # ... and after it


class Lexicon:
    """The terms of several categories in one automaton.

    `terms` maps a category name ("violence") to its terms; `exceptions` are spans that
    cancel the hits inside them. `sources` (category -> files) is kept for describe().
    """

    def __init__(
        self,
        terms: Mapping[str, Iterable[str]],
        exceptions: Iterable[str] = (),
        sources: Mapping[str, list[str]] | None = None,
    ) -> None:
        by_term: dict[str, set[str]] = {}
        self.counts: dict[str, int] = {}
        for cat, items in terms.items():
            check_category(cat)
            seen = {_norm_term(t) for t in items} - {""}
            self.counts[cat] = len(seen)
            for t in seen:
                by_term.setdefault(t, set()).add(f"lexicon.{cat}")
        excs = {_norm_term(t) for t in exceptions} - {""}
        self.sources = dict(sources or {})
        self._categories = sorted(f"lexicon.{c}" for c in terms)
        self._automaton = ahocorasick.Automaton()
        for t in excs:
            self._automaton.add_word(t, _entry(t, ()))
        for t, cats in by_term.items():
            if t not in excs:  # a term that is also an exception never hits
                self._automaton.add_word(t, _entry(t, tuple(sorted(cats))))
        self._empty = not (by_term or excs)
        if not self._empty:
            self._automaton.make_automaton()
        self.max_len = max(map(len, [*by_term, *excs]), default=0)
        self.exceptions = len(excs)
        # an exception that began before the scan position must still be seen
        self.context = self.max_len + 1 if excs else 1

    def categories(self) -> list[str]:
        """lexicon.<category> for every category loaded."""
        return list(self._categories)

    def find(self, text: str, pos: int = 0) -> list[Hit]:
        """Every term occurrence starting at or after `pos` (whole words for Latin edges),
        one hit per category of the term, minus those inside an exception (exceptions come
        back as shields)."""
        if self._empty:
            return []
        hits: list[Hit] = []
        shields: list[tuple[int, int]] = []
        n = len(text)
        begin = max(0, pos - self.max_len) if self.exceptions else pos
        for last, entry in self._automaton.iter(text, begin):
            end = last + 1
            start = end - len(entry.term)
            if entry.left and start > 0 and is_word_char(text[start - 1]):
                continue
            if entry.right and end < n and is_word_char(text[end]):
                continue
            if not entry.categories:
                shields.append((start, end))
            elif start >= pos:
                hits.extend(Hit(start, end, c, entry.term) for c in entry.categories)
        if shields:
            hits = [h for h in hits if not any(s <= h.start and h.end <= e for s, e in shields)]
            hits += [Hit(s, e, "", None) for s, e in shields if s >= pos]
        return hits

    def stable_before(self, text: str) -> int:
        """A hit (or exception) spans at most `max_len` characters plus one to its right."""
        return len(text) - self.max_len - 1


def _norm_term(term: str) -> str:
    return normalize(term.strip()).text.strip()


def _entry(term: str, categories: tuple[str, ...]) -> _Entry:
    return _Entry(term, categories, is_word_char(term[0]), is_word_char(term[-1]))


def load_lexicon(
    builtin: bool | list[str], files: Mapping[str, list[Path]], base_dir: Path
) -> Lexicon:
    """The lexicon of a policy: the built-in categories asked for (`True` = all of them)
    plus the files of each category (relative paths against `base_dir`)."""
    known = builtin_categories()
    chosen = known if builtin is True else [] if builtin is False else list(builtin)
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise BadInputError(
            f"unknown built-in lexicon(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    paths: dict[str, list[Path]] = {c: [BUILTIN_DIR / f"{c}.txt"] for c in chosen}
    for cat, items in files.items():
        check_category(cat)
        paths.setdefault(cat, []).extend(p if p.is_absolute() else base_dir / p for p in items)
    terms: dict[str, list[str]] = {}
    exceptions: list[str] = []
    sources: dict[str, list[str]] = {}
    for cat, plist in paths.items():
        for p in plist:
            lf = read_lexicon(p)
            terms.setdefault(cat, []).extend(lf.terms)
            exceptions.extend(lf.exceptions)
            sources.setdefault(cat, []).append(
                f"builtin:{cat}" if p.parent == BUILTIN_DIR else str(p)
            )
    return Lexicon(terms, exceptions, sources)


@CHECKS.register("lexicon")
def build_lexicon(policy: GuardPolicy, base_dir: Path) -> Lexicon:
    """The policy's built-in and own lexicons in one automaton."""
    files = {
        c: [Path(p) for p in ([v] if isinstance(v, str) else v)] for c, v in policy.lexicons.items()
    }
    return load_lexicon(policy.builtin_lexicons, files, base_dir)
