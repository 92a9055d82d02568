"""Exact deduplication: of records with the same (normalized) content only the first stays.

The key is the 128-bit BLAKE2b digest of `kind.content(rec)` (every text of the record joined
by newlines; for qa records the message contents), lowercased and whitespace-collapsed unless
`normalize: false`. `fit` sees the records in stream order and only appends each record's
16-byte digest and its id to two flat buffers (about 16 bytes + the id's length + 8 bytes per
record, no Python object per record); once the input ends it sorts the digests (numpy) to find
every record whose digest occurred earlier and keeps just those records' ids with the id of the
first occurrence. `process` then drops them with reason "duplicate" and detail
"same as <kept id>". Record ids are unique (see `records.make_record`), so the verdict can be
looked up by id on any engine worker.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable
from typing import ClassVar

import numpy as np
from pydantic import Field, PrivateAttr

from luodi.data.ops.base import Drop, Operator, register
from luodi.data.records import Record


def content_key(text: str, normalize: bool = True) -> bytes:
    """The 16-byte BLAKE2b digest of `text`, lowercased and whitespace-collapsed if `normalize`."""
    if normalize:
        text = " ".join(text.lower().split())
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def first_occurrences(digests: bytes | bytearray) -> tuple[np.ndarray, np.ndarray]:
    """For concatenated 16-byte digests: (positions of repeats, position of each one's first).

    A repeat is a position whose digest occurred at a smaller position; both arrays are in
    increasing order of the repeat's position.
    """
    n = len(digests) // 16
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    words = np.frombuffer(digests, dtype=">u8").reshape(n, 2)
    # stream position as the last sort key: within a run of equal digests the first comes first
    order = np.lexsort((np.arange(n), words[:, 1], words[:, 0]))
    ordered = words[order]
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    run_first = order[np.flatnonzero(new_run)][np.cumsum(new_run) - 1]
    repeat = ~new_run
    dup, kept = order[repeat], run_first[repeat]
    by_pos = np.argsort(dup, kind="stable")
    return dup[by_pos], kept[by_pos]


@register
class ExactDedup(Operator):
    """Drop records whose normalized content equals an earlier record's (the first stays)."""

    name: ClassVar[str] = "exact_dedup"
    is_global: ClassVar[bool] = True

    normalize: bool = Field(
        default=True,
        description="Compare contents lowercased with whitespace runs collapsed to one space; "
        "false compares them byte for byte.",
    )

    _drops: dict[str, str] = PrivateAttr(default_factory=dict)
    """id of a duplicate -> id of the record kept in its place."""

    def fit(self, batches: Iterable[list[Record]]) -> None:
        """Find the duplicates among all live records, in stream order."""
        digests = bytearray()
        ids = bytearray()
        ends = array("q")  # end offset of each id in `ids`
        content, normalize = self.kind.content, self.normalize
        for batch in batches:
            for rec in batch:
                digests += content_key(content(rec), normalize)
                ids += str(rec["id"]).encode("utf-8")
                ends.append(len(ids))
        dup, kept = first_occurrences(digests)
        del digests

        def id_at(i: int) -> str:
            return ids[(ends[i - 1] if i else 0) : ends[i]].decode("utf-8")

        self._drops = {id_at(int(d)): id_at(int(k)) for d, k in zip(dup, kept, strict=True)}

    @property
    def duplicates(self) -> dict[str, str]:
        """What `fit` found: id of each record to drop -> id of the record kept instead."""
        return dict(self._drops)

    def process(self, batch: list[Record]) -> list[Record | Drop]:
        """Each record itself, or Drop("duplicate", "same as <kept id>") for a repeat."""
        drops = self._drops
        out: list[Record | Drop] = []
        for rec in batch:
            kept = drops.get(rec["id"])
            out.append(rec if kept is None else Drop("duplicate", f"same as {kept}"))
        return out
