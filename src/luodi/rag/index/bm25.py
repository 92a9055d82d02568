"""The BM25 lexical index (bm25s) with jieba segmentation for Chinese.

`terms(text)` is the one analyser for documents and queries: lower-cased text cut by jieba's
search mode (Chinese words and their sub-words; runs of Latin letters and digits come out as
whole words), keeping tokens with a letter, digit or CJK character, minus a short list of
function words. Mixed Chinese/English text gets both.

bm25s indexes are static, so adds and removes mark the index stale and the next search
rebuilds it from the stored terms (builds are batch work: a knowledge-base change, then
searches). Files: `terms.json` (id -> terms, what a rebuild needs) and `bm25/` (the bm25s
index, so loading does not rebuild).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from luodi.errors import BadInputError, MissingDependencyError
from luodi.rag.index.base import (
    LEXICAL_INDEXES,
    Hit,
    IndexKind,
    IndexMismatchError,
    check_ids,
    tree_files,
    write_index_json,
)

TERMS_FILE = "terms.json"
BM25_DIR = "bm25"
_WORD = re.compile(r"[0-9a-z\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff\u3400-\u9fff\uf900-\ufaff]")
STOPWORDS = frozenset(
    # English function words
    "a an and are as at be but by do does for from how i in is it its of on or our that the "
    "their them they this to was we were what when where which who why will with you your "
    # Chinese function words and particles
    "的 了 是 在 和 与 及 或 也 都 就 而 吗 呢 吧 啊 呀 之 于 把 被 这 那 个 有".split()
)
_JIEBA_LOCK = threading.Lock()
_JIEBA: Any = None


def _jieba() -> Any:
    global _JIEBA
    with _JIEBA_LOCK:
        if _JIEBA is None:
            try:
                import jieba
            except ImportError as exc:  # pragma: no cover - a declared dependency
                raise MissingDependencyError(
                    f"BM25 needs jieba: pip install jieba ({exc})"
                ) from None
            jieba.setLogLevel(logging.WARNING)  # it logs its dictionary loading at INFO
            jieba.initialize()
            _JIEBA = jieba
    return _JIEBA


def terms(text: str) -> list[str]:
    """The index terms of `text` (documents and queries alike), in order, repeats kept."""
    return [
        t
        for t in (w.strip() for w in _jieba().cut_for_search(text.lower()))
        if t and t not in STOPWORDS and _WORD.search(t)
    ]


def _bm25s() -> Any:
    try:
        import bm25s
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise MissingDependencyError(f"BM25 needs bm25s: pip install bm25s ({exc})") from None
    return bm25s


class BM25Index:
    """A `LexicalIndex` on bm25s (Lucene BM25, k1 and b configurable)."""

    kind = "bm25"

    def __init__(self, k1: float = 1.5, b: float = 0.75) -> None:
        if not (isinstance(k1, int | float) and k1 >= 0 and isinstance(b, int | float)):
            raise BadInputError(f"BM25 k1 must be >= 0 and b a number, got k1={k1!r}, b={b!r}")
        if not 0 <= b <= 1:
            raise BadInputError(f"BM25 b must be between 0 and 1, got {b!r}")
        self.k1, self.b = float(k1), float(b)
        self._terms: dict[str, list[str]] = {}
        self._model: Any = None
        self._order: list[str] = []  # bm25s document position -> id
        self._position: dict[str, int] = {}
        self._stale = False
        self._lock = threading.RLock()

    def add(self, ids: list[str], texts: list[str]) -> None:
        """Index texts under ids (an id already present is replaced)."""
        if isinstance(texts, str):
            raise BadInputError("pass a list of texts, not one string")
        texts = list(texts)
        ids = check_ids(ids, len(texts))
        analysed = []
        for i, text in zip(ids, texts, strict=True):
            if not isinstance(text, str):
                raise BadInputError(f"text of {i!r} is a {type(text).__name__}, not a string")
            analysed.append(terms(text))
        with self._lock:
            for i, t in zip(ids, analysed, strict=True):
                self._terms.pop(i, None)  # a replaced id moves to the end, like a fresh add
                self._terms[i] = t
            self._stale = self._stale or bool(ids)

    def remove(self, ids: list[str]) -> None:
        """Remove ids; unknown ones are ignored."""
        ids = check_ids(list(dict.fromkeys(ids)))
        with self._lock:
            for i in ids:
                if self._terms.pop(i, None) is not None:
                    self._stale = True

    def _built(self) -> Any:
        """The bm25s model of the current documents (rebuilt when stale); None when empty."""
        with self._lock:
            if self._stale or (self._model is None and self._terms):
                self._order = list(self._terms)
                self._position = {i: n for n, i in enumerate(self._order)}
                self._model = None
                if self._order:
                    model = _bm25s().BM25(k1=self.k1, b=self.b, method="lucene")
                    # An empty document still needs a row: bm25s' empty token keeps positions.
                    model.index([self._terms[i] for i in self._order], show_progress=False)
                    self._model = model
                self._stale = False
            return self._model

    def search(self, query: str, k: int, allow: Collection[str] | None = None) -> list[Hit]:
        """Up to k documents sharing a term with `query`, by BM25 score, best first.

        Ties keep insertion order. Stop words alone, an empty index or k < 1 give [].
        """
        if not isinstance(query, str):
            raise BadInputError(f"the query is a {type(query).__name__}, not a string")
        if k < 1:
            return []
        q = terms(query)
        with self._lock:
            model = self._built()
            if model is None:
                return []
            vocab = model.vocab_dict
            known = [vocab[t] for t in q if t in vocab]
            if not known:
                return []
            scores = np.asarray(model.get_scores_from_ids(known), dtype=np.float64)
            order = self._order
            if allow is not None:
                mask = np.zeros(len(scores), dtype=bool)
                for i in allow:
                    pos = self._position.get(i)
                    if pos is not None:
                        mask[pos] = True
                scores = np.where(mask, scores, 0.0)
        positive = np.flatnonzero(scores > 0)
        if len(positive) > k:
            positive = positive[np.argpartition(-scores[positive], k - 1)[:k]]
        ranked = positive[np.lexsort((positive, -scores[positive]))]
        return [Hit(order[p], float(scores[p])) for p in ranked]

    def __len__(self) -> int:
        return len(self._terms)

    def save(self, folder: Path) -> None:
        """Write terms.json, the bm25s index (bm25/) and index.json into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            model = self._built()
            (folder / TERMS_FILE).write_text(
                json.dumps(self._terms, ensure_ascii=False), encoding="utf-8"
            )
            files = [TERMS_FILE]
            if model is not None:
                model.save(str(folder / BM25_DIR), show_progress=False)
                files += tree_files(folder, BM25_DIR)
            params = {"k1": self.k1, "b": self.b}
            write_index_json(folder, self.kind, None, len(self), params, files)

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> BM25Index:
        """Restore a saved index (files already verified by read_index_json)."""
        index = cls(**meta.get("params", {}))
        path = folder / TERMS_FILE
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(stored, dict):
                raise ValueError("not an object of id -> terms")
        except ValueError as exc:
            raise IndexMismatchError(f"corrupt index file {path}: {exc}") from None
        index._terms = stored
        if stored:
            try:
                model = _bm25s().BM25.load(str(folder / BM25_DIR), show_progress=False)
            except Exception as exc:  # bm25s raises whatever numpy/json raise
                raise IndexMismatchError(
                    f"corrupt index files in {folder / BM25_DIR}: {exc}"
                ) from None
            index._model = model
            index._order = list(stored)
            index._position = {i: n for n, i in enumerate(index._order)}
        return index


LEXICAL_INDEXES.add("bm25", IndexKind(new=BM25Index, load=BM25Index.load))
