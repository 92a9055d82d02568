"""The index protocols, their registries, and the on-disk contract every index keeps.

An index folder holds the index's own files and `index.json`:
`{"kind", "dim", "count", "params", "files": {relative path: sha256}}`. Loading checks every
listed file against its checksum first, so a truncated or altered file is reported by name
(`IndexMismatchError`) instead of surfacing as an engine crash or wrong results.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from luodi.errors import BadInputError
from luodi.registry import Registry

INDEX_JSON = "index.json"


class IndexMismatchError(BadInputError):
    """An index folder cannot be used: missing or corrupt files, or not the expected kind/dim."""

    code = "index_mismatch"


@dataclass(frozen=True)
class Hit:
    """One search result; higher scores are better (cosine for vectors, BM25 for lexical)."""

    id: str
    score: float


class VectorIndex(Protocol):
    """Nearest-neighbour search over unit vectors by cosine similarity."""

    kind: str
    dim: int

    def add(self, ids: list[str], vectors: np.ndarray) -> None:
        """Add (or replace, for ids already present) one vector per id."""
        ...

    def remove(self, ids: list[str]) -> None:
        """Remove these ids; unknown ids are ignored."""
        ...

    def search(
        self, queries: np.ndarray, k: int, allow: Collection[str] | None = None
    ) -> list[list[Hit]]:
        """Per query, up to k hits best first; `allow` restricts results to those ids."""
        ...

    def __len__(self) -> int: ...

    def save(self, folder: Path) -> None:
        """Write the index's files and index.json into `folder` (created if missing)."""
        ...


class LexicalIndex(Protocol):
    """Keyword search (BM25) over texts."""

    kind: str

    def add(self, ids: list[str], texts: list[str]) -> None:
        """Add (or replace, for ids already present) one text per id."""
        ...

    def remove(self, ids: list[str]) -> None:
        """Remove these ids; unknown ids are ignored."""
        ...

    def search(self, query: str, k: int, allow: Collection[str] | None = None) -> list[Hit]:
        """Up to k hits with a positive score, best first; `allow` restricts to those ids."""
        ...

    def __len__(self) -> int: ...

    def save(self, folder: Path) -> None:
        """Write the index's files and index.json into `folder` (created if missing)."""
        ...


@dataclass(frozen=True)
class IndexKind:
    """How to make a fresh index of one kind and how to load a saved one."""

    new: Callable[..., Any]
    """new(**params) for lexical kinds, new(dim, **params) for vector kinds."""
    load: Callable[[Path, dict[str, Any]], Any]
    """load(folder, index.json contents); files are already verified."""


VECTOR_INDEXES: Registry[IndexKind] = Registry("vector index")
LEXICAL_INDEXES: Registry[IndexKind] = Registry("lexical index")


def check_ids(ids: list[str], n: int | None = None) -> list[str]:
    """`ids` as a list of distinct non-empty strings (and `n` of them when given)."""
    if isinstance(ids, str):
        raise BadInputError("pass a list of ids, not one string")
    out = list(ids)
    if n is not None and len(out) != n:
        raise BadInputError(f"{len(out)} ids for {n} items; pass one id per item")
    for i in out:
        if not isinstance(i, str) or not i:
            raise BadInputError(f"index ids must be non-empty strings, got {i!r}")
    if len(set(out)) != len(out):
        seen: set[str] = set()
        dup = next(i for i in out if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise BadInputError(f"id {dup!r} is given twice in one add")
    return out


def as_matrix(vectors: np.ndarray, dim: int, what: str = "vectors") -> np.ndarray:
    """`vectors` as a C-contiguous float32 (n, dim) matrix with unit-length rows.

    A single 1-D vector becomes one row. Zero rows stay zero; NaN or infinite values and a
    wrong width are BadInputError.
    """
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim == 1:
        v = v.reshape(1, -1)
    if v.ndim != 2 or v.shape[1] != dim:
        raise BadInputError(f"{what} have shape {tuple(v.shape)}; this index holds {dim}-d vectors")
    squares = np.einsum("ij,ij->i", v, v)  # one pass; NaN/inf in a row make its sum non-finite
    if not np.isfinite(squares).all():
        raise BadInputError(f"{what} contain NaN, infinite or overflowing values")
    norms = np.sqrt(squares, out=squares)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(v / norms[:, None], dtype=np.float32)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_files(folder: Path, under: str) -> list[str]:
    """Relative paths (posix) of every file below folder/under, sorted."""
    root = folder / under
    if root.is_file():
        return [under]
    out = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            out.append((Path(dirpath) / name).relative_to(folder).as_posix())
    return sorted(out)


def write_index_json(
    folder: Path, kind: str, dim: int | None, count: int, params: dict[str, Any], files: list[str]
) -> None:
    """Write index.json with checksums of `files` (paths relative to `folder`)."""
    meta = {
        "kind": kind,
        "dim": dim,
        "count": count,
        "params": params,
        "files": {name: file_sha256(folder / name) for name in files},
    }
    tmp = folder / (INDEX_JSON + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(folder / INDEX_JSON)


def read_index_json(folder: Path) -> dict[str, Any]:
    """index.json of `folder` after verifying every file it lists; IndexMismatchError naming
    the missing or corrupt file otherwise."""
    folder = Path(folder)
    path = folder / INDEX_JSON
    if not path.is_file():
        raise IndexMismatchError(f"{folder} holds no index ({INDEX_JSON} is missing)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or not isinstance(meta.get("kind"), str):
            raise ValueError("no 'kind'")
        files = meta.get("files")
        if not isinstance(files, dict):
            raise ValueError("no 'files'")
    except (ValueError, UnicodeDecodeError) as exc:
        raise IndexMismatchError(f"corrupt index file {path}: {exc}") from None
    for name, digest in files.items():
        f = folder / name
        if not f.is_file():
            raise IndexMismatchError(f"index file {f} is missing")
        if file_sha256(f) != digest:
            raise IndexMismatchError(
                f"corrupt index file {f}: its checksum differs from the one saved in {path}"
            )
    return meta


def _open(registry: Registry[IndexKind], folder: Path, meta: dict[str, Any]) -> Any:
    kind = meta["kind"]
    if kind not in registry:
        raise IndexMismatchError(
            f"{folder / INDEX_JSON} is a {kind!r} index, not a {registry.family} "
            f"({', '.join(registry.names())})"
        )
    try:
        return registry.get(kind).load(folder, meta)
    except BadInputError:
        raise
    except Exception as exc:  # an engine refusing its own files
        raise IndexMismatchError(f"cannot load the {kind} index in {folder}: {exc}") from exc


def new_vector_index(kind: str, dim: int, **params: Any) -> VectorIndex:
    """An empty vector index of a registered kind ("faiss", "milvus") for `dim`-d vectors."""
    if not isinstance(dim, int) or dim < 1:
        raise BadInputError(f"vector dimension must be a positive integer, got {dim!r}")
    return VECTOR_INDEXES.get(kind).new(dim, **params)


def load_vector_index(folder: Path, expect_dim: int | None = None) -> VectorIndex:
    """The vector index saved in `folder`.

    IndexMismatchError (a BadInputError) when index.json or a file it lists is missing or
    corrupt (naming the file), the kind is not a vector index, or `expect_dim` is given and
    differs from the saved dimension.
    """
    meta = read_index_json(folder)
    dim = meta.get("dim")
    if meta["kind"] in VECTOR_INDEXES and not isinstance(dim, int):
        raise IndexMismatchError(f"corrupt index file {Path(folder) / INDEX_JSON}: no 'dim'")
    if expect_dim is not None and meta["kind"] in VECTOR_INDEXES and dim != expect_dim:
        raise IndexMismatchError(
            f"the index in {folder} holds {dim}-d vectors but {expect_dim}-d were expected "
            "(a different embedder?); rebuild it with the embedder in use"
        )
    return _open(VECTOR_INDEXES, Path(folder), meta)


def new_lexical_index(kind: str = "bm25", **params: Any) -> LexicalIndex:
    """An empty lexical index (BM25 with jieba segmentation by default)."""
    return LEXICAL_INDEXES.get(kind).new(**params)


def load_lexical_index(folder: Path) -> LexicalIndex:
    """The lexical index saved in `folder`; IndexMismatchError as for load_vector_index."""
    return _open(LEXICAL_INDEXES, Path(folder), read_index_json(folder))
