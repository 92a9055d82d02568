"""The Milvus vector index through pymilvus: embedded milvus-lite files, or a Milvus server.

Without `uri`, the index lives in a milvus-lite database in a private working folder; `save`
copies that database into the index folder (`milvus.db/`) and `load` works on a private copy
of it, so a saved (registered) folder is never modified. With `uri` ("http://host:19530")
the vectors live in that server's collection: `save` records where they are and `load`
reconnects, so a saved folder points at live, shared data (not a frozen copy).

Collections have a VARCHAR primary key (the id) and a FLOAT_VECTOR field, COSINE metric.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from luodi.errors import BackendUnavailableError, BadInputError, MissingDependencyError
from luodi.rag.index.base import (
    VECTOR_INDEXES,
    Hit,
    IndexKind,
    IndexMismatchError,
    as_matrix,
    check_ids,
    tree_files,
    write_index_json,
)

DB_DIR = "milvus.db"
MAX_ID_LENGTH = 512
_MAX_LIMIT = 16_384  # Milvus refuses larger top-k
_BATCH = 5_000
TOKEN_ENV = "LUODI_MILVUS_TOKEN"


def _pymilvus() -> Any:
    try:
        import pymilvus
    except ImportError as exc:
        raise MissingDependencyError(
            f"the milvus index needs pymilvus and milvus-lite: pip install pymilvus milvus-lite "
            f"({exc})"
        ) from exc
    return pymilvus


def _release_lite(db: Path) -> None:
    """Stop the in-process milvus-lite server of `db`: it drains its background compaction
    and index builds and closes its files (closing the client alone leaves them running)."""
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:  # pragma: no cover - milvus-lite is what opened the file
        return
    server_manager_instance.release_server(str(db))


def _close(client: Any, workdir: str | None) -> None:
    try:
        client.close()
    except Exception:  # already closed or the server went away; nothing to release
        pass
    if workdir:
        _release_lite(Path(workdir) / DB_DIR)
        shutil.rmtree(workdir, ignore_errors=True)


def _quote(ids: Collection[str]) -> str:
    return json.dumps(list(ids), ensure_ascii=False)


class MilvusIndex:
    """A `VectorIndex` on Milvus (see the module docstring for where data lives)."""

    kind = "milvus"

    def __init__(
        self,
        dim: int,
        uri: str | None = None,
        collection: str = "luodi_vectors",
        index_type: str = "FLAT",
        index_params: dict[str, Any] | None = None,
        search_params: dict[str, Any] | None = None,
        _db: Path | None = None,
    ) -> None:
        pymilvus = _pymilvus()
        self.dim = dim
        self.uri = uri
        self.collection = collection
        self.index_type = index_type
        self.index_params = dict(index_params or {})
        self.search_params = dict(search_params or {})
        self._lock = threading.RLock()
        self._workdir: str | None = None
        if uri is None:
            self._workdir = tempfile.mkdtemp(prefix="luodi-milvus-")
            db = Path(self._workdir) / DB_DIR
            if _db is not None:
                shutil.copytree(_db, db)
            target = str(db)
        else:
            target = uri
        try:
            self._client = pymilvus.MilvusClient(uri=target, token=os.environ.get(TOKEN_ENV, ""))
        except Exception as exc:
            if self._workdir:
                shutil.rmtree(self._workdir, ignore_errors=True)
            where = f"milvus-lite database {_db}" if _db is not None else f"Milvus at {uri}"
            cls = IndexMismatchError if _db is not None else BackendUnavailableError
            raise cls(f"cannot open {where}: {exc}") from None
        self._finalizer = weakref.finalize(self, _close, self._client, self._workdir)
        if not self._client.has_collection(collection):
            self._create()
        self._check_dim()
        self._client.load_collection(collection)

    def _create(self) -> None:
        pymilvus = _pymilvus()
        schema = pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", pymilvus.DataType.VARCHAR, is_primary=True, max_length=MAX_ID_LENGTH)
        schema.add_field("vector", pymilvus.DataType.FLOAT_VECTOR, dim=self.dim)
        params = self._client.prepare_index_params()
        params.add_index(
            field_name="vector",
            index_type=self.index_type,
            metric_type="COSINE",
            params=self.index_params,
        )
        try:
            self._client.create_collection(self.collection, schema=schema, index_params=params)
        except Exception as exc:
            raise BadInputError(
                f"Milvus refused the collection ({self.index_type} index): {exc}"
            ) from None

    def _check_dim(self) -> None:
        info = self._client.describe_collection(self.collection)
        for f in info.get("fields", []):
            if f.get("name") == "vector":
                got = int(f.get("params", {}).get("dim", -1))
                if got != self.dim:
                    raise IndexMismatchError(
                        f"Milvus collection {self.collection!r} holds {got}-d vectors, not "
                        f"{self.dim}-d"
                    )
                return
        raise IndexMismatchError(f"Milvus collection {self.collection!r} has no 'vector' field")

    def add(self, ids: list[str], vectors: np.ndarray) -> None:
        """Upsert vectors (normalised here) under ids."""
        matrix = as_matrix(vectors, self.dim)
        ids = check_ids(ids, len(matrix))
        for i in ids:
            if len(i.encode()) > MAX_ID_LENGTH:
                raise BadInputError(f"id {i[:40]!r}... is longer than {MAX_ID_LENGTH} bytes")
        with self._lock:
            for start in range(0, len(ids), _BATCH):
                rows = [
                    {"id": i, "vector": v}
                    for i, v in zip(
                        ids[start : start + _BATCH],
                        matrix[start : start + _BATCH].tolist(),
                        strict=True,
                    )
                ]
                self._client.upsert(self.collection, rows)

    def remove(self, ids: list[str]) -> None:
        """Delete ids; unknown ones are ignored."""
        ids = check_ids(list(dict.fromkeys(ids)))
        with self._lock:
            for start in range(0, len(ids), _BATCH):
                self._client.delete(self.collection, ids=ids[start : start + _BATCH])

    def search(
        self, queries: np.ndarray, k: int, allow: Collection[str] | None = None
    ) -> list[list[Hit]]:
        """Up to k hits per query (cosine, best first); `allow` becomes an `id in [...]`
        filter expression."""
        q = as_matrix(queries, self.dim, "queries")
        if k < 1 or (allow is not None and not allow):
            return [[] for _ in range(len(q))]
        kwargs: dict[str, Any] = {"limit": min(k, _MAX_LIMIT), "output_fields": ["id"]}
        if allow is not None:
            kwargs["filter"] = f"id in {_quote(allow)}"
        if self.search_params:
            kwargs["search_params"] = {"params": self.search_params}
        with self._lock:
            if not len(self):
                return [[] for _ in range(len(q))]
            result = self._client.search(self.collection, data=q.tolist(), **kwargs)
        return [
            sorted(
                (Hit(str(h["id"]), float(h["distance"])) for h in hits),
                key=lambda h: -h.score,
            )
            for hits in result
        ]

    def __len__(self) -> int:
        with self._lock:
            rows = self._client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def params(self) -> dict[str, Any]:
        """The constructor parameters (saved in index.json and restored at load)."""
        return {
            "uri": self.uri,
            "collection": self.collection,
            "index_type": self.index_type,
            "index_params": self.index_params,
            "search_params": self.search_params,
        }

    def save(self, folder: Path) -> None:
        """milvus-lite: copy the database into folder/milvus.db; a server: record its uri and
        collection. Then index.json."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            count = len(self)
            files: list[str] = []
            if self._workdir is not None:
                pymilvus = _pymilvus()
                self._client.flush(self.collection)
                self._client.close()
                db = Path(self._workdir) / DB_DIR
                _release_lite(db)  # all files written and closed before they are copied
                target = folder / DB_DIR
                if target.exists():
                    shutil.rmtree(target)
                shutil.copytree(db, target, ignore=shutil.ignore_patterns("LOCK"))
                self._client = pymilvus.MilvusClient(uri=str(db))
                self._finalizer.detach()
                self._finalizer = weakref.finalize(self, _close, self._client, self._workdir)
                self._client.load_collection(self.collection)
                files = tree_files(folder, DB_DIR)
            write_index_json(folder, self.kind, self.dim, count, self.params(), files)

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> MilvusIndex:
        """Reopen a saved index: a private copy of its milvus-lite database, or the server."""
        params = dict(meta.get("params", {}))
        db = None
        if params.get("uri") is None:
            db = folder / DB_DIR
            if not db.is_dir():
                raise IndexMismatchError(f"index folder {db} is missing")
        index = cls(int(meta["dim"]), _db=db, **params)
        if db is not None and len(index) != meta.get("count"):
            raise IndexMismatchError(
                f"{db} holds {len(index)} vectors but index.json says {meta.get('count')}"
            )
        return index

    def close(self) -> None:
        """Release the client (and the working copy of a milvus-lite database)."""
        self._finalizer()


VECTOR_INDEXES.add("milvus", IndexKind(new=MilvusIndex, load=MilvusIndex.load))
