"""The Faiss vector index: exact (flat) for small collections, HNSW for large ones.

Vectors are normalised and compared by inner product, so scores are cosines. With
`structure="auto"` the index is flat while it holds at most `hnsw_above` vectors (exact and
fast enough there) and is rebuilt as HNSW when an add takes it past that; "flat" or "hnsw"
force one. Ids are strings mapped to Faiss labels; removal marks labels dead (searches skip
them through an ID selector) and the index is compacted once a quarter of it is dead.

HNSW's efSearch decides recall, and the efSearch a collection needs depends on its vectors
(embeddings of real text reach 0.95 recall@10 at small values; vectors with no structure,
like random ones, need thousands). Unless `ef_search` is fixed, the index tunes it itself
whenever it is built as HNSW or an add grows or shrinks it by a fifth since the last
tuning: up to 300 vectors of the batch being added are held out, searched exactly and
through HNSW at efSearch 16, 32, ... 4096 against the rest, then added; the smallest value
whose recall@10 reaches `target_recall` + 0.01 is kept (the last one tried if none does).
Held-out vectors matter: a vector already in the graph is found through its own edges and
would overstate recall. The tuned value and the recall it measured are saved with the index.

Files: `vectors.faiss` (faiss.write_index) and `ids.json` (label -> id, null when removed).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal

import numpy as np

from luodi.errors import BadInputError, MissingDependencyError
from luodi.rag.index.base import (
    VECTOR_INDEXES,
    Hit,
    IndexKind,
    IndexMismatchError,
    as_matrix,
    check_ids,
    write_index_json,
)

FAISS_FILE = "vectors.faiss"
IDS_FILE = "ids.json"
HNSW_ABOVE = 50_000
# Filters that leave at most this many vectors are scored exactly with numpy: HNSW's graph
# walk degrades when most nodes are filtered out, and a small exact product is faster anyway.
_EXACT_FILTER_MAX = 10_000
_DEFAULT_EF = 128  # until tuned
_EF_LADDER = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
_TUNE_QUERIES = 300
_TUNE_MIN_QUERIES = 50
_TUNE_K = 10


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise MissingDependencyError(
            f"the faiss index needs faiss-cpu: pip install faiss-cpu ({exc})"
        ) from None
    return faiss


class FaissIndex:
    """A `VectorIndex` on Faiss (see the module docstring for structure and removal)."""

    kind = "faiss"

    def __init__(
        self,
        dim: int,
        structure: Literal["auto", "flat", "hnsw"] = "auto",
        hnsw_above: int = HNSW_ABOVE,
        hnsw_m: int = 32,
        ef_construction: int = 200,
        ef_search: int | None = None,
        target_recall: float = 0.95,
    ) -> None:
        if structure not in ("auto", "flat", "hnsw"):
            raise BadInputError(f"faiss structure must be auto, flat or hnsw, not {structure!r}")
        for name, value in (
            ("hnsw_above", hnsw_above),
            ("hnsw_m", hnsw_m),
            ("ef_construction", ef_construction),
            ("ef_search", 1 if ef_search is None else ef_search),
        ):
            if not isinstance(value, int) or value < 1:
                raise BadInputError(f"faiss {name} must be a positive integer, got {value!r}")
        if not 0 < target_recall <= 1:
            raise BadInputError(f"faiss target_recall must be in (0, 1], got {target_recall!r}")
        self.dim = dim
        self.structure = structure
        self.hnsw_above = hnsw_above
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.target_recall = target_recall
        self.tuned: dict[str, Any] | None = None
        """{"ef_search", "recall", "count"} of the last tuning (None: not tuned)."""
        self._labels: list[str | None] = []  # Faiss label -> id (None: removed)
        self._label_of: dict[str, int] = {}
        self._dead = 0
        self._index: Any = self._empty("hnsw" if structure == "hnsw" else "flat")
        self._lock = threading.RLock()
        self._selector: Any = None  # cached "not dead" selector, reset on change

    # -- structure ---------------------------------------------------------------------------

    def _empty(self, structure: str) -> Any:
        faiss = _faiss()
        if structure == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.ef_construction
            index.hnsw.efSearch = self.ef
            return index
        return faiss.IndexFlatIP(self.dim)

    @property
    def is_hnsw(self) -> bool:
        """Whether the index is currently an HNSW graph (else exact flat)."""
        return hasattr(self._index, "hnsw")

    def _target(self, live: int) -> str:
        if self.structure != "auto":
            return self.structure
        return "hnsw" if live > self.hnsw_above else "flat"

    def _rebuild(self, structure: str, extra: tuple[list[str], np.ndarray] | None = None) -> None:
        """Re-create the index as `structure` from its live vectors (dropping dead labels)
        plus `extra` (ids, vectors) not yet in it."""
        live = [i for i, name in enumerate(self._labels) if name is not None]
        ids = [self._labels[i] for i in live]
        vectors = self._vectors(live)
        if extra is not None:
            ids += extra[0]
            vectors = np.concatenate([vectors, extra[1]])
        self._index = self._empty(structure)
        self._labels, self._label_of, self._dead = [], {}, 0
        self._selector = None
        if ids:
            self._append_tuning(ids, vectors)  # type: ignore[arg-type]

    def _vectors(self, labels: list[int]) -> np.ndarray:
        if not labels:
            return np.zeros((0, self.dim), dtype=np.float32)
        n = self._index.ntotal
        if len(labels) == n:
            return self._index.reconstruct_n(0, n)
        return self._index.reconstruct_batch(np.asarray(labels, dtype=np.int64))

    def _append(self, ids: list[str], vectors: np.ndarray) -> None:
        base = self._index.ntotal
        self._index.add(vectors)
        for offset, name in enumerate(ids):
            self._label_of[name] = base + offset
        self._labels.extend(ids)

    def _append_tuning(self, ids: list[str], vectors: np.ndarray) -> None:
        """Append; when efSearch is due for tuning, part of the batch is held out, used as
        queries against the rest, then appended (queries the graph has never seen)."""
        after = len(self) + len(ids)
        held = min(_TUNE_QUERIES, len(ids) // 2)
        if not self._tune_due(after) or held < _TUNE_MIN_QUERIES:
            self._append(ids, vectors)
            return
        pick = np.zeros(len(ids), dtype=bool)
        pick[np.random.default_rng(0).choice(len(ids), size=held, replace=False)] = True
        self._append([i for i, p in zip(ids, pick, strict=True) if not p], vectors[~pick])
        self.tune(vectors[pick])
        self._append([i for i, p in zip(ids, pick, strict=True) if p], vectors[pick])
        assert self.tuned is not None
        self.tuned["count"] = len(self)

    # -- VectorIndex -------------------------------------------------------------------------

    def add(self, ids: list[str], vectors: np.ndarray) -> None:
        """Add vectors (normalised here); an id already present has its vector replaced.

        In "auto" structure, an add that takes the index past `hnsw_above` vectors rebuilds
        it as HNSW once.
        """
        matrix = as_matrix(vectors, self.dim)
        ids = check_ids(ids, len(matrix))
        if not ids:
            return
        with self._lock:
            self._kill([i for i in ids if i in self._label_of])
            target = self._target(len(self) + len(ids))
            if target == "hnsw" and not self.is_hnsw:
                self._rebuild("hnsw", (ids, matrix))
            else:
                self._append_tuning(ids, matrix)
            self._selector = None
            self._maybe_compact()

    def remove(self, ids: list[str]) -> None:
        """Remove ids (unknown ones are ignored); searches never return them again."""
        ids = check_ids(list(dict.fromkeys(ids)))
        with self._lock:
            self._kill([i for i in ids if i in self._label_of])
            self._maybe_compact()

    def _kill(self, ids: list[str]) -> None:
        for name in ids:
            label = self._label_of.pop(name)
            self._labels[label] = None
            self._dead += 1
        if ids:
            self._selector = None

    def _maybe_compact(self) -> None:
        if self._dead and self._dead * 4 > len(self._labels):
            self._rebuild(self._target(len(self)))

    # -- efSearch tuning ----------------------------------------------------------------------

    @property
    def ef(self) -> int:
        """The efSearch HNSW searches use: fixed, tuned, or the default before tuning."""
        if self.ef_search is not None:
            return self.ef_search
        return self.tuned["ef_search"] if self.tuned else _DEFAULT_EF

    def _tune_due(self, count: int) -> bool:
        if not self.is_hnsw or self.ef_search is not None:
            return False
        return self.tuned is None or abs(count - self.tuned["count"]) * 5 > self.tuned["count"]

    def tune(self, queries: np.ndarray) -> dict[str, Any]:
        """Keep the smallest efSearch whose recall@10 for `queries` (vectors that are not in
        the index, distributed like its contents) reaches `target_recall` + 0.01 against
        exact search; see the module docstring. Returns the `tuned` record."""
        q = as_matrix(queries, self.dim, "queries")
        with self._lock:
            if not self.is_hnsw or not len(q) or len(self) < _TUNE_K:
                raise BadInputError("tuning needs an HNSW index of at least 10 vectors and queries")
            truth = self._exact_neighbours(q)
            recall, ef = 0.0, _EF_LADDER[0]
            for ef in _EF_LADDER:
                _, found = self._search(q, _TUNE_K, self._live_selector(), ef)
                hits = sum(
                    len(exact.intersection(row))
                    for row, exact in zip(found.tolist(), truth, strict=True)
                )
                recall = hits / (_TUNE_K * len(q))
                if recall >= min(1.0, self.target_recall + 0.01):
                    break
            self.tuned = {"ef_search": ef, "recall": round(recall, 4), "count": len(self)}
            self._index.hnsw.efSearch = self.ef
            return self.tuned

    def _exact_neighbours(self, queries: np.ndarray) -> list[set[int]]:
        """The exact top-10 labels of each query among the live vectors."""
        n = self._index.ntotal
        best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
        best_l = np.zeros((len(queries), 0), dtype=np.int64)
        dead = np.array([name is None for name in self._labels], dtype=bool)
        for start in range(0, n, 32_768):  # bounded memory at any size
            stop = min(n, start + 32_768)
            scores = queries @ self._index.reconstruct_n(start, stop - start).T
            scores[:, dead[start:stop]] = -np.inf
            labels = np.broadcast_to(np.arange(start, stop), scores.shape)
            all_s = np.concatenate([best_s, scores], axis=1)
            all_l = np.concatenate([best_l, labels], axis=1)
            keep = min(_TUNE_K, all_s.shape[1])
            top = np.argpartition(-all_s, keep - 1, axis=1)[:, :keep]
            best_s = np.take_along_axis(all_s, top, axis=1)
            best_l = np.take_along_axis(all_l, top, axis=1)
        return [set(row[np.isfinite(s)].tolist()) for row, s in zip(best_l, best_s, strict=True)]

    # -- search ------------------------------------------------------------------------------

    def search(
        self, queries: np.ndarray, k: int, allow: Collection[str] | None = None
    ) -> list[list[Hit]]:
        """Up to k hits per query (cosine, best first); `allow` restricts to those ids.

        A 1-D query is one query. k < 1 or an empty index (or an empty `allow`) gives empty
        lists. Filters that leave few vectors are scored exactly.
        """
        q = as_matrix(queries, self.dim, "queries")
        if k < 1 or not len(self):
            return [[] for _ in range(len(q))]
        with self._lock:
            if allow is not None:
                labels = np.fromiter(
                    (self._label_of[i] for i in set(allow) if i in self._label_of), dtype=np.int64
                )
                if len(labels) == 0:
                    return [[] for _ in range(len(q))]
                if self.is_hnsw and len(labels) <= _EXACT_FILTER_MAX:
                    return self._exact(q, k, np.sort(labels))
                selector = _faiss().IDSelectorBatch(labels)
            else:
                selector = self._live_selector()
            scores, found = self._search(q, min(k, self._index.ntotal), selector)
        return [self._hits(s, f) for s, f in zip(scores, found, strict=True)]

    def _search(
        self, q: np.ndarray, k: int, selector: Any, ef: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        faiss = _faiss()
        if not self.is_hnsw:
            if selector is None:
                return self._index.search(q, k)
            return self._index.search(q, k, params=faiss.SearchParameters(sel=selector))
        ef = max(ef or self.ef, k)
        if selector is None and ef == self._index.hnsw.efSearch:
            return self._index.search(q, k)  # the common case: no per-call parameters
        params = faiss.SearchParametersHNSW(efSearch=ef, sel=selector)
        return self._index.search(q, k, params=params)

    def _exact(self, q: np.ndarray, k: int, labels: np.ndarray) -> list[list[Hit]]:
        vectors = self._vectors(labels.tolist())
        scores = q @ vectors.T
        k = min(k, len(labels))
        out = []
        for row in scores:
            top = np.argpartition(-row, k - 1)[:k] if k < len(row) else np.arange(len(row))
            top = top[np.argsort(-row[top], kind="stable")]
            out.append([Hit(self._labels[int(labels[j])], float(row[j])) for j in top])  # type: ignore[arg-type]
        return out

    def _live_selector(self) -> Any:
        if not self._dead:
            return None
        if self._selector is None:
            faiss = _faiss()
            dead = np.array([i for i, n in enumerate(self._labels) if n is None], dtype=np.int64)
            batch = faiss.IDSelectorBatch(dead)
            self._selector = faiss.IDSelectorNot(batch)
            self._selector._keep = batch  # the SWIG object does not own its inner selector
        return self._selector

    def _hits(self, scores: np.ndarray, found: np.ndarray) -> list[Hit]:
        labels = self._labels
        return [
            Hit(labels[label], float(score))  # type: ignore[arg-type]
            for score, label in zip(scores.tolist(), found.tolist(), strict=True)
            if label >= 0 and labels[label] is not None
        ]

    def __len__(self) -> int:
        return len(self._label_of)

    def ids(self) -> list[str]:
        """The ids held (in label order, which tuning and compaction may shuffle)."""
        return [i for i in self._labels if i is not None]

    def params(self) -> dict[str, Any]:
        """The constructor parameters (saved in index.json and restored at load)."""
        return {
            "structure": self.structure,
            "hnsw_above": self.hnsw_above,
            "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "target_recall": self.target_recall,
        }

    def save(self, folder: Path) -> None:
        """Write vectors.faiss, ids.json and index.json into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            _faiss().write_index(self._index, str(folder / FAISS_FILE))
            (folder / IDS_FILE).write_text(json.dumps(self._labels), encoding="utf-8")
            params = self.params() | {
                "built_as": "hnsw" if self.is_hnsw else "flat",
                "tuned": self.tuned if self.is_hnsw else None,
            }
            write_index_json(folder, self.kind, self.dim, len(self), params, [FAISS_FILE, IDS_FILE])

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> FaissIndex:
        """Restore a saved index (files already verified by read_index_json)."""
        saved = dict(meta.get("params", {}))
        saved.pop("built_as", None)
        tuned = saved.pop("tuned", None)
        index = cls(int(meta["dim"]), **saved)
        path = folder / FAISS_FILE
        try:
            raw = _faiss().read_index(str(path))
        except RuntimeError as exc:
            raise IndexMismatchError(f"corrupt index file {path}: {exc}") from None
        try:
            labels = json.loads((folder / IDS_FILE).read_text(encoding="utf-8"))
        except ValueError as exc:
            raise IndexMismatchError(f"corrupt index file {folder / IDS_FILE}: {exc}") from None
        if raw.d != index.dim or raw.ntotal != len(labels):
            raise IndexMismatchError(
                f"{path} holds {raw.ntotal} vectors of {raw.d} dims but {folder / IDS_FILE} "
                f"lists {len(labels)} and index.json says {index.dim} dims"
            )
        index._index = raw
        if hasattr(raw, "hnsw"):
            index.tuned = tuned
            raw.hnsw.efSearch = index.ef
        index._labels = labels
        index._label_of = {name: i for i, name in enumerate(labels) if name is not None}
        index._dead = len(labels) - len(index._label_of)
        return index


VECTOR_INDEXES.add("faiss", IndexKind(new=FaissIndex, load=FaissIndex.load))
