"""Dataset profiles: distributions gathered while records stream into a dataset version.

`Profile` sees every batch once (save_dataset feeds it) and keeps bounded state only:
counters with a cap on distinct keys, a fixed log-spaced length histogram and, for small
datasets, the exact lengths. Language detection is the one costly step, so it runs on a
systematic sample whose weights make the counts estimates of the whole dataset.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from luodi.data.records import Record, RecordKind, get_kind, meta_of

LANG_CHARS = 2000
"""Language detection looks at the first this-many characters of a record's content."""
LANG_EVERY_UNTIL = 10_000
"""Every record up to this many is language-checked; then every 10th, then every 100th, ..."""
EXACT_LENGTHS = 100_000
"""Up to this many rows percentiles are exact; beyond, they come from the histogram."""
MAX_KEYS = 1000
"""Distinct values kept per counter; rarer newcomers are counted under OTHER."""
OTHER = "(other)"
NONE = "(none)"
META_KEYS = ("category", "subject")

BINS_PER_DECADE = 16
# Bin j covers [EDGES[j], EDGES[j+1]); the last bin is open-ended (>= 10^7 chars).
EDGES = np.array([0.0] + [10 ** (i / BINS_PER_DECADE) for i in range(7 * BINS_PER_DECADE + 1)])
MARGIN_EDGES = np.round(np.linspace(-1.0, 1.0, 21), 2)


class CappedCounter:
    """A Counter that stops adding new keys after `cap` distinct ones (bounded memory)."""

    def __init__(self, cap: int = MAX_KEYS) -> None:
        self.cap = cap
        self.counts: Counter[str] = Counter()

    def add(self, key: str, n: int = 1) -> None:
        """Count `key` (or OTHER when the cap is reached and `key` is new)."""
        if key not in self.counts and len(self.counts) >= self.cap:
            key = OTHER
        self.counts[key] += n

    def result(self) -> dict[str, int]:
        """Counts, most common first (ties by key, so the output is deterministic)."""
        return dict(sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0])))


def lang_stride(index: int) -> int:
    """Sampling stride at record `index`: 1 below 10k, 10 below 100k, 100 below 1M, ..."""
    if index < LANG_EVERY_UNTIL:
        return 1
    return 10 ** len(str(index // LANG_EVERY_UNTIL))


def _detect(text: str) -> str:
    # Imported late: the operators package registers every operator on import.
    from luodi.data.ops.filters import detect_language

    return detect_language(text)


class Profile:
    """Streaming collector of a dataset's distributions; `add` batches, then `result`.

    Memory is bounded whatever the dataset size: fixed histograms, counters capped at
    MAX_KEYS distinct values, and the exact lengths of at most EXACT_LENGTHS records.
    """

    def __init__(self, kind: RecordKind | str) -> None:
        self.kind = get_kind(kind) if isinstance(kind, str) else kind
        self.rows = 0
        self.splits: Counter[str] = Counter()
        self.len_hist = np.zeros(len(EDGES), dtype=np.int64)
        self.len_sum = 0
        self.len_min: int | None = None
        self.len_max = 0
        self.exact: list[int] | None = []
        self.langs: Counter[str] = Counter()
        self.lang_sampled = 0
        self.meta = {k: CappedCounter() for k in META_KEYS}
        self.labels = CappedCounter()
        self.turns: Counter[str] = Counter()
        self.has_system = 0
        self.rating_sum = {"chosen": 0.0, "rejected": 0.0}
        self.rating_n = {"chosen": 0, "rejected": 0}
        self.margins = np.zeros(len(MARGIN_EDGES) - 1, dtype=np.int64)

    def add(self, records: Iterable[Record]) -> None:
        """Account for a batch of records (any iterable; each record is seen once)."""
        lens: list[int] = []
        for rec in records:
            index = self.rows
            self.rows += 1
            self.splits[rec.get("split") or "unsplit"] += 1
            content = self.kind.content(rec)
            lens.append(len(content))
            stride = lang_stride(index)
            if index % stride == 0:
                # Weighting by the stride keeps the counts an estimate of all records.
                self.langs[_detect(content[:LANG_CHARS])] += stride
                self.lang_sampled += 1
            raw = rec.get("meta")
            # Cheap substring test first: most records have no category and json is costly.
            if raw and any(k in raw for k in META_KEYS):
                meta = meta_of(rec)
                for key, counter in self.meta.items():
                    value = meta.get(key)
                    if value is not None and value != "":
                        counter.add(str(value))
            self._add_kind(rec)
        if lens:
            self._add_lengths(lens)

    def _add_lengths(self, lens: list[int]) -> None:
        arr = np.asarray(lens, dtype=np.int64)
        idx = np.searchsorted(EDGES, arr, side="right") - 1
        self.len_hist += np.bincount(idx, minlength=len(EDGES))
        self.len_sum += int(arr.sum())
        lo, hi = int(arr.min()), int(arr.max())
        self.len_min = lo if self.len_min is None else min(self.len_min, lo)
        self.len_max = max(self.len_max, hi)
        if self.exact is not None:
            self.exact.extend(lens)
            if len(self.exact) > EXACT_LENGTHS:
                self.exact = None

    def _add_kind(self, rec: Record) -> None:
        name = self.kind.name
        if name == "labeled":
            label = rec.get("label")
            self.labels.add(NONE if label is None or label == "" else str(label))
        elif name == "qa":
            msgs = rec.get("messages") or []
            users = sum(1 for m in msgs if m.get("role") == "user")
            self.turns[str(users) if users < 3 else "3+"] += 1
            if any(m.get("role") == "system" for m in msgs):
                self.has_system += 1
        elif name == "preference":
            chosen, rejected = rec.get("chosen_rating"), rec.get("rejected_rating")
            for side, value in (("chosen", chosen), ("rejected", rejected)):
                if value is not None and not math.isnan(value):
                    self.rating_sum[side] += value
                    self.rating_n[side] += 1
            if chosen is not None and rejected is not None:
                # Rounding keeps e.g. 0.3 - 0.1 in the 0.2 bin despite float error.
                margin = min(max(round(chosen - rejected, 9), -1.0), 1.0)
                if not math.isnan(margin):
                    j = int(np.searchsorted(MARGIN_EDGES, margin, side="right")) - 1
                    self.margins[min(j, len(self.margins) - 1)] += 1

    def _percentile(self, q: float) -> float:
        """The q-quantile of content lengths: exact when lengths were kept, else estimated."""
        if self.exact is not None:
            return float(np.percentile(np.asarray(self.exact), q * 100))
        rank = q * self.rows
        cum = np.cumsum(self.len_hist)
        j = int(np.searchsorted(cum, rank, side="left"))
        lo = EDGES[j]
        hi = EDGES[j + 1] if j + 1 < len(EDGES) else float(self.len_max)
        before = cum[j - 1] if j > 0 else 0
        frac = (rank - before) / max(self.len_hist[j], 1)
        # Geometric interpolation matches the log spacing of the bins.
        value = lo * (hi / lo) ** frac if lo > 0 else hi * frac
        return float(min(max(value, self.len_min or 0), self.len_max))

    def _length_result(self) -> dict[str, Any]:
        if not self.rows:
            return {"unit": "chars", "count": 0}
        nz = np.nonzero(self.len_hist)[0]
        first, last = int(nz[0]), int(nz[-1])
        edges = [float(e) for e in EDGES[first : last + 1]]
        edges.append(float(EDGES[last + 1]) if last + 1 < len(EDGES) else float(self.len_max))
        exact = self.exact is not None
        return {
            "unit": "chars",
            "count": self.rows,
            "min": self.len_min,
            "mean": round(self.len_sum / self.rows, 2),
            "p50": round(self._percentile(0.5), 1),
            "p90": round(self._percentile(0.9), 1),
            "p99": round(self._percentile(0.99), 1),
            "max": self.len_max,
            "percentiles": "exact"
            if exact
            else (
                f"approximate: interpolated in a log-spaced histogram ({BINS_PER_DECADE} bins "
                "per decade, within about 8%)"
            ),
            "histogram": {
                "edges": [round(e, 2) for e in edges],
                "counts": [int(c) for c in self.len_hist[first : last + 1]],
            },
        }

    def result(self) -> dict[str, Any]:
        """The profile as a JSON-ready dict (see DatasetReport.profile).

        Keys: kind, rows, splits, length {min, mean, p50, p90, p99, max, percentiles,
        histogram {edges, counts}}, languages {counts, sampled, method}, meta {category,
        subject} (when present), and per kind: labels (labeled), turns + has_system (qa),
        ratings {chosen_mean, rejected_mean, rated, margin_histogram} (preference).
        """
        out: dict[str, Any] = {
            "kind": self.kind.name,
            "rows": self.rows,
            "splits": dict(sorted(self.splits.items())),
            "length": self._length_result(),
            "languages": {
                "counts": dict(sorted(self.langs.items(), key=lambda kv: (-kv[1], kv[0]))),
                "sampled": self.lang_sampled,
                "method": (
                    f"first {LANG_CHARS} chars of each record up to {LANG_EVERY_UNTIL}, then "
                    "every 10th (to 100k), every 100th (to 1M), ...; counts are weighted "
                    "estimates of all records"
                    if self.lang_sampled < self.rows
                    else f"first {LANG_CHARS} chars of every record"
                ),
            },
        }
        meta = {k: c.result() for k, c in self.meta.items() if c.counts}
        if meta:
            out["meta"] = meta
        if self.kind.name == "labeled":
            out["labels"] = self.labels.result()
        elif self.kind.name == "qa":
            order = ["0", "1", "2", "3+"]
            out["turns"] = {k: self.turns[k] for k in order if self.turns[k]}
            out["has_system"] = self.has_system
        elif self.kind.name == "preference":
            n_c, n_r = self.rating_n["chosen"], self.rating_n["rejected"]
            out["ratings"] = {
                "chosen_mean": round(self.rating_sum["chosen"] / n_c, 4) if n_c else None,
                "rejected_mean": round(self.rating_sum["rejected"] / n_r, 4) if n_r else None,
                "rated": int(self.margins.sum()),
                "margin_histogram": {
                    "edges": [float(e) for e in MARGIN_EDGES],
                    "counts": [int(c) for c in self.margins],
                },
            }
        return out
