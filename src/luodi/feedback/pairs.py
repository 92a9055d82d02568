"""Feedback to training records: corrections to SFT conversations, ratings to DPO pairs.

Both builders take the requests that got feedback (`Rated`, see source.py) and return the
records of the data stage's kinds (`qa`, `preference`) plus, per request that gave nothing,
why (`Skips`). Every record's `meta` names the request ids, feedback ids and model versions it
came from, so a dataset version can be traced back to the answers it learned from.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from luodi.data.records import Record, get_kind, make_record
from luodi.feedback.source import (
    NEGATIVE_BELOW,
    DeploymentTexts,
    Rated,
    Unusable,
    client_messages,
    prompt_key,
    prompt_text,
)

EXAMPLES = 5


@dataclass
class Skips:
    """Requests that gave no record, counted by reason, with a few request ids each."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, request_id: str) -> None:
        """Count `request_id` as skipped for `reason`."""
        self.counts[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < EXAMPLES:
            ex.append(request_id)


def _sha(payload: Any) -> str:
    return hashlib.sha256(
        json.dumps(payload, ensure_ascii=False, sort_keys=True).encode("utf-8")
    ).hexdigest()


def _meta(rs: list[Rated], origin: str, **extra: Any) -> dict[str, Any]:
    return {
        "origin": origin,
        "request_ids": [r.request_id for r in rs],
        "feedback_ids": sorted({i for r in rs for i in r.feedback_ids}),
        "model_versions": sorted({r.model_version for r in rs if r.model_version}),
        "deployment": next((r.deployment for r in rs if r.deployment), None),
        "comments": [c for r in rs for c in r.comments],
        **extra,
    }


def _response_ok(r: Rated) -> bool:
    return (r.status or 0) < 400 and bool((r.response_masked or "").strip())


def _nothing_to_learn(r: Rated) -> str | None:
    """The skip reason of feedback that carries neither a rating nor a correction."""
    if r.rating is None and r.correction is None:
        return "comment_only"
    return None


def sft_records(
    rated: list[Rated],
    texts: DeploymentTexts,
    keep_system_prompt: bool = False,
    min_rating: float | None = None,
) -> tuple[list[Record], Skips]:
    """One qa record per corrected request: its client conversation, then the correction as
    the assistant's answer. With `min_rating`, uncorrected responses rated at least that are
    records too (the answer as given). Corrections come first, newest first, so when
    cleaning keeps one record per question the latest correction is the one kept."""
    kind = get_kind("qa")
    skips = Skips()
    records: list[Record] = []
    for r in sorted(rated, key=lambda r: (r.correction is not None, _when(r)), reverse=True):
        if reason := _nothing_to_learn(r):
            skips.add(reason, r.request_id)
            continue
        if r.correction is not None:
            answer, origin = r.correction, "correction"
        elif min_rating is not None and r.rating is not None and r.rating >= min_rating:
            if not _response_ok(r):
                skips.add("failed_or_empty_response", r.request_id)
                continue
            answer, origin = r.response_masked or "", "rated_response"
        else:
            skips.add("no_correction", r.request_id)
            continue
        try:
            msgs = client_messages(r, texts, keep_system_prompt)
        except Unusable as exc:
            skips.add(exc.reason, r.request_id)
            continue
        messages = [*msgs, {"role": "assistant", "content": answer}]
        records.append(
            make_record(
                kind,
                source=f"feedback:{r.deployment or '-'}",
                source_sha256=_sha(messages),
                location=f"request {r.request_id}",
                ordinal=0,
                meta=_meta([r], origin, rating=r.rating),
                messages=messages,
            )
        )
    return records, skips


@dataclass
class _Group:
    """Requests asking the same conversation (normalised prompt text)."""

    prompt: str
    system: str | None
    members: list[Rated] = field(default_factory=list)


def _groups(
    rated: list[Rated], texts: DeploymentTexts, keep_system_prompt: bool, skips: Skips
) -> list[_Group]:
    groups: dict[str, _Group] = {}
    for r in rated:
        if reason := _nothing_to_learn(r):
            skips.add(reason, r.request_id)
            continue
        try:
            msgs = client_messages(r, texts, keep_system_prompt)
        except Unusable as exc:
            skips.add(exc.reason, r.request_id)
            continue
        text = prompt_text(msgs)
        system = "\n".join(m["content"] for m in msgs if m["role"] == "system") or None
        g = groups.setdefault(prompt_key(text), _Group(text, system))
        g.members.append(r)
    return list(groups.values())


@dataclass
class _Pair:
    chosen: str
    rejected: str
    chosen_rating: float | None
    rejected_rating: float | None
    sources: list[Rated]


def _group_pairs(g: _Group) -> tuple[list[_Pair], dict[str, str]]:
    """The pairs of one group, and why each member not in any pair was left out.

    chosen = the latest correction, else the best-rated answer; rejected = the answer each
    correction corrects, and every rated answer below the chosen one (below NEGATIVE_BELOW
    when the chosen is a correction, which carries no rating of its own).
    """
    answered = [r for r in g.members if _response_ok(r)]
    corrected = sorted((r for r in g.members if r.correction), key=_when)
    candidates: list[_Pair] = []
    if corrected:
        best = corrected[-1]
        chosen = best.correction or ""
        for c in corrected:  # a correction beats the answer it corrects
            if _response_ok(c):
                candidates.append(
                    _Pair(c.correction or "", c.response_masked or "", None, c.rating, [c])
                )
        for r in answered:
            if r.correction is None and r.rating is not None and r.rating < NEGATIVE_BELOW:
                candidates.append(_Pair(chosen, r.response_masked or "", None, r.rating, [best, r]))
    else:
        rated = sorted((r for r in answered if r.rating is not None), key=_by_rating)
        if rated:
            best = rated[0]
            top = best.rating or 0.0
            for r in rated[1:]:
                if (r.rating or 0.0) < top:
                    candidates.append(
                        _Pair(
                            best.response_masked or "",
                            r.response_masked or "",
                            top,
                            r.rating,
                            [best, r],
                        )
                    )
    pairs: list[_Pair] = []
    seen: set[tuple[str, str]] = set()
    for p in candidates:
        key = (p.chosen.strip(), p.rejected.strip())
        if key[0] != key[1] and key not in seen:
            seen.add(key)
            pairs.append(p)
    used = {r.request_id for p in pairs for r in p.sources}
    why: dict[str, str] = {}
    for r in g.members:
        if r.request_id in used:
            continue
        if not _response_ok(r):
            why[r.request_id] = "failed_or_empty_response"
        elif r.correction and r.correction.strip() == (r.response_masked or "").strip():
            why[r.request_id] = "correction_same_as_answer"
        elif pairs:
            why[r.request_id] = "not_below_chosen"
        elif len(answered) == 1:
            why[r.request_id] = "single_response"
        else:
            why[r.request_id] = "tie"
    return pairs, why


def _when(r: Rated) -> float:
    return r.last_at.timestamp() if r.last_at else 0.0


def _by_rating(r: Rated) -> tuple[float, float]:
    """Best rating first; among equals the latest feedback."""
    return (-(r.rating or 0.0), -_when(r))


def dpo_records(
    rated: list[Rated], texts: DeploymentTexts, keep_system_prompt: bool = False
) -> tuple[list[Record], Skips]:
    """Preference records from requests asking the same conversation (see `_group_pairs`).

    Requests in no pair are counted by reason: `single_response` (one answer, no
    correction), `tie` (every answer rated the same), `not_below_chosen` (rated as well as
    what was chosen), `failed_or_empty_response`, `correction_same_as_answer`.
    """
    kind = get_kind("preference")
    skips = Skips()
    records: list[Record] = []
    for g in _groups(rated, texts, keep_system_prompt, skips):
        pairs, why = _group_pairs(g)
        for rid, reason in why.items():
            skips.add(reason, rid)
        for i, p in enumerate(pairs):
            ids = " > ".join(r.request_id for r in p.sources)
            records.append(
                make_record(
                    kind,
                    source=f"feedback:{p.sources[0].deployment or '-'}",
                    source_sha256=_sha([g.prompt, p.chosen, p.rejected]),
                    location=f"requests {ids}",
                    ordinal=i,
                    meta=_meta(
                        p.sources,
                        "correction" if p.chosen_rating is None else "ratings",
                        system=g.system,
                    ),
                    prompt=g.prompt,
                    chosen=p.chosen,
                    rejected=p.rejected,
                    chosen_rating=p.chosen_rating,
                    rejected_rating=p.rejected_rating,
                )
            )
    return records, skips
