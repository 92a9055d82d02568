"""Operators for question-answer records (`messages`: system/user/assistant turns)."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from typing import ClassVar

from pydantic import PrivateAttr

from luodi.data.ops.base import Drop, Operator, register
from luodi.data.ops.normalize import strip_html_text
from luodi.data.records import Record


@register
class QaDropEmpty(Operator):
    """Drop conversations with an empty question or answer, or with no answer at all."""

    name: ClassVar[str] = "qa_drop_empty"
    kinds: ClassVar[tuple[str, ...]] = ("qa",)

    def process(self, batch: list[Record]) -> list[Record | Drop]:
        """Each record, or Drop empty_question / empty_answer (naming the turn) / no_answer."""
        out: list[Record | Drop] = []
        for rec in batch:
            out.append(_check_turns(rec.get("messages") or []) or rec)
        return out


def _check_turns(msgs: list[dict[str, str]]) -> Drop | None:
    has_user = has_answer = False
    for i, m in enumerate(msgs, 1):
        role = m.get("role")
        empty = not (m.get("content") or "").strip()
        if role == "user":
            has_user = True
            if empty:
                return Drop("empty_question", f"turn {i} (user) is empty")
        elif role == "assistant":
            has_answer = True
            if empty:
                return Drop("empty_answer", f"turn {i} (assistant) is empty")
    if not has_user:
        return Drop("empty_question", "no user turn")
    if not has_answer:
        return Drop("no_answer", "no assistant turn")
    return None


@register
class QaStripHtmlAnswers(Operator):
    """Strip HTML from assistant answers only (questions and system prompts stay as written)."""

    name: ClassVar[str] = "qa_strip_html_answers"
    kinds: ClassVar[tuple[str, ...]] = ("qa",)

    def process(self, batch: list[Record]) -> list[Record | Drop]:
        """Each record with HTML stripped from its assistant turns (same object if none)."""
        out: list[Record | Drop] = []
        for rec in batch:
            msgs = rec.get("messages") or []
            new_msgs = []
            changed = False
            for m in msgs:
                c = m.get("content") or ""
                if m.get("role") == "assistant" and c:
                    nc = strip_html_text(c)
                    if nc != c:
                        m = {**m, "content": nc}
                        changed = True
                new_msgs.append(m)
            out.append({**rec, "messages": new_msgs} if changed else rec)
        return out


_NOT_WORD_RE = re.compile(r"[\W_]+")


def question_key(rec: Record) -> bytes | None:
    """A digest of the record's first user question, normalized (NFKC, lowercased,
    punctuation and whitespace removed); None when there is no non-empty user turn.

    A digest rather than the text: it is stable across processes (Ray workers) and small.
    """
    for m in rec.get("messages") or []:
        if m.get("role") == "user":
            q = _NOT_WORD_RE.sub("", unicodedata.normalize("NFKC", m.get("content") or ""))
            if not q:
                return None
            return hashlib.blake2b(q.lower().encode(), digest_size=16).digest()
    return None


@register
class QaDedupQuestion(Operator):
    """Keep one conversation per question: later records asking the same first question
    (ignoring case, width, punctuation and spacing) are dropped."""

    name: ClassVar[str] = "qa_dedup_question"
    kinds: ClassVar[tuple[str, ...]] = ("qa",)
    is_global: ClassVar[bool] = True

    _first: dict[bytes, str] = PrivateAttr(default_factory=dict)

    def fit(self, batches: Iterable[list[Record]]) -> None:
        """Remember the id of the first record asking each normalized question."""
        first: dict[bytes, str] = {}
        for batch in batches:
            for rec in batch:
                key = question_key(rec)
                if key is not None and key not in first:
                    first[key] = rec["id"]
        self._first = first

    def process(self, batch: list[Record]) -> list[Record | Drop]:
        """Each record, or Drop duplicate_question whose detail is the kept record's id."""
        out: list[Record | Drop] = []
        for rec in batch:
            key = question_key(rec)
            kept = self._first.get(key) if key is not None else None
            if kept is None:
                # Not seen in fit (process called without fit): the first one seen wins.
                if key is not None:
                    self._first[key] = rec["id"]
                out.append(rec)
            elif kept != rec["id"]:
                out.append(Drop("duplicate_question", kept))
            else:
                out.append(rec)
        return out
