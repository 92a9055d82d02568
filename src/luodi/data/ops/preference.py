"""Operators for preference records (`prompt`, `chosen`, `rejected`)."""

from __future__ import annotations

from typing import ClassVar

from luodi.data.ops.base import Drop, Operator, register
from luodi.data.records import Record


@register
class PreferenceDropEmpty(Operator):
    """Drop pairs that teach nothing: empty prompt, an empty response, or chosen == rejected."""

    name: ClassVar[str] = "preference_drop_empty"
    kinds: ClassVar[tuple[str, ...]] = ("preference",)

    def process(self, batch: list[Record]) -> list[Record | Drop]:
        """Each record, or Drop empty_prompt / empty_response / identical_pair."""
        out: list[Record | Drop] = []
        for rec in batch:
            prompt = (rec.get("prompt") or "").strip()
            chosen = (rec.get("chosen") or "").strip()
            rejected = (rec.get("rejected") or "").strip()
            if not prompt:
                out.append(Drop("empty_prompt", "prompt is empty"))
            elif not chosen or not rejected:
                which = "chosen" if not chosen else "rejected"
                out.append(Drop("empty_response", f"{which} is empty"))
            elif chosen == rejected:
                out.append(Drop("identical_pair", "chosen and rejected are the same text"))
            else:
                out.append(rec)
        return out
