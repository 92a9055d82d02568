"""Near-duplicate removal: MinHash LSH over character n-grams (Chinese and English alike).

`near_dedup` is global: `fit` computes every live record's MinHash signature batch by batch
(in worker processes for large inputs), clusters the signatures (see `luodi.data.minhash`)
and remembers which records are not their cluster's first member; `process` drops those with
the reason `near_duplicate` and a detail naming the kept record, e.g. `~0.91 with 3f2a…`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import ClassVar

import numpy as np
from pydantic import Field, PrivateAttr

from luodi.data.minhash import cluster_signatures, estimate_jaccard, signature_batches
from luodi.data.ops.base import Drop, Operator, register
from luodi.data.records import Record


@register
class NearDedup(Operator):
    """Drop records whose text nearly repeats an earlier record's (character n-gram Jaccard)."""

    name: ClassVar[str] = "near_dedup"
    is_global: ClassVar[bool] = True

    threshold: float = Field(
        default=0.8,
        gt=0.0,
        le=1.0,
        description="Records whose character n-gram Jaccard similarity is at least this are "
        "near duplicates; the first in input order is kept.",
    )
    ngram: int = Field(
        default=5,
        ge=1,
        le=64,
        description="Shingle length in characters (5 suits Chinese and English text).",
    )
    num_perm: int = Field(
        default=128,
        ge=16,
        le=1024,
        description="MinHash permutations: more estimate similarity more precisely, slower.",
    )
    seed: int = Field(default=0, ge=0, description="Seed of the MinHash permutations.")
    workers: int = Field(
        default=2,
        ge=1,
        le=256,
        description="Processes computing signatures (used only for inputs over 2048 records).",
    )
    exact_verify: bool = Field(
        default=True,
        description="Decide borderline candidate pairs by their exact n-gram Jaccard rather "
        "than the MinHash estimate (recall near the threshold; holds the texts during fit).",
    )

    _drops: dict[str, str] = PrivateAttr(default_factory=dict)

    def fit(self, batches: Iterable[list[Record]]) -> None:
        """Sign every live record, cluster, and note each non-first member with its detail."""
        ids: list[str] = []
        texts: list[str] | None = [] if self.exact_verify else None
        content = self.kind.content  # hoisted: pydantic private-attribute access is slow

        def contents() -> Iterator[list[str]]:
            for batch in batches:
                cs = [content(r) for r in batch]
                ids.extend(str(r["id"]) for r in batch)
                if texts is not None:
                    texts.extend(cs)
                yield cs

        blocks = list(
            signature_batches(
                contents(),
                ngram=self.ngram,
                num_perm=self.num_perm,
                seed=self.seed,
                workers=self.workers,
            )
        )
        self._drops = {}
        if not blocks:
            return
        sigs = np.concatenate(blocks)
        rep = cluster_signatures(sigs, threshold=self.threshold, texts=texts, ngram=self.ngram)
        dups = np.flatnonzero(rep != np.arange(len(rep)))
        est = np.atleast_1d(estimate_jaccard(sigs[dups], sigs[rep[dups]]))
        kept = {ids[i] for i in np.flatnonzero(rep == np.arange(len(rep))).tolist()}
        for i, r, e in zip(dups.tolist(), rep[dups].tolist(), est.tolist(), strict=True):
            # Drops are looked up by id: an id shared with a kept record is never dropped.
            if ids[i] not in kept:
                self._drops[ids[i]] = f"~{e:.2f} with {ids[r]}"

    def process(self, batch: list[Record]) -> list[Record | Drop]:
        """Drop the records `fit` found to near-duplicate an earlier one."""
        drops = self._drops
        out: list[Record | Drop] = []
        for rec in batch:
            detail = drops.get(str(rec["id"]))
            out.append(rec if detail is None else Drop("near_duplicate", detail))
        return out
