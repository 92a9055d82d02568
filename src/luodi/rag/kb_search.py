"""Searching knowledge bases: a version loaded once per process, and the checks that refuse
an index its kb.json does not describe (another embedder, another size, damaged files)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from luodi.errors import BadInputError, ConflictError
from luodi.rag.chunk import Chunk
from luodi.rag.index import load_lexical_index, load_vector_index
from luodi.rag.kb_build import (
    LEXICAL,
    VECTORS,
    KBNeedsRebuildError,
    config_of,
    embedder_of,
    kb_info,
    read_chunks,
    read_documents,
    read_kb_json,
    resolve_kb,
)
from luodi.rag.kb_models import DocInfo, KBConfig, KBInfo
from luodi.rag.retrieve import RetrieveConfig, Retrieved, Retriever
from luodi.store import ArtifactInfo, Store


class KnowledgeBase:
    """A loaded version, ready to search: its info, config, documents, chunks and retriever
    (None when it has no chunks)."""

    def __init__(
        self,
        info: KBInfo,
        config: KBConfig,
        documents: list[DocInfo],
        chunks: dict[str, Chunk],
        retriever: Retriever | None,
    ) -> None:
        self.info, self.config, self.documents = info, config, documents
        self.chunks, self.retriever = chunks, retriever

    def search(self, query: str, cfg: RetrieveConfig | None = None) -> list[Retrieved]:
        """The chunks best matching `query`, best first (see luodi.rag.retrieve).

        BadInputError for a blank query; ConflictError (409) when the version is empty.
        """
        if not query.strip():
            raise BadInputError("the query is empty")
        if self.retriever is None:
            raise ConflictError(
                f"knowledge base {self.info.ref} has no documents yet; add some with "
                f"`luodi kb add {self.info.name} FILES`"
            )
        return self.retriever.search(query, cfg or RetrieveConfig())


_CACHE: OrderedDict[tuple[str, str], KnowledgeBase] = OrderedDict()
_CACHE_SIZE = 8
_CACHE_LOCK = threading.Lock()
_LOADING: dict[tuple[str, str], threading.Lock] = {}


def open_kb(store: Store, ref: str) -> KnowledgeBase:
    """Version `ref` loaded for searching; loaded once per process (per folder and content
    hash) and shared afterwards (the 8 most recently used stay loaded).

    KBNeedsRebuildError (409) when its kb.json names another embedder or dimension than the
    vectors were made with, the embedder now makes vectors of another size, or an index is
    unreadable or out of step with the chunks; the message says to run `luodi kb rebuild`.
    """
    a = resolve_kb(store, ref)
    key = (str(a.path), a.content_hash)
    with _CACHE_LOCK:
        kb = _CACHE.get(key)
        if kb is not None:
            _CACHE.move_to_end(key)
            return kb
        loading = _LOADING.setdefault(key, threading.Lock())
    # One thread loads a version; the others wait for it, and searches of loaded versions
    # go on meanwhile.
    with loading:
        with _CACHE_LOCK:
            kb = _CACHE.get(key)
        if kb is not None:
            return kb
        try:
            kb = _load(a)
            with _CACHE_LOCK:
                _CACHE[key] = kb
                while len(_CACHE) > _CACHE_SIZE:
                    _CACHE.popitem(last=False)
        finally:
            with _CACHE_LOCK:
                _LOADING.pop(key, None)
        return kb


def clear_cache() -> None:
    """Forget every loaded version (the next open_kb reads the files again)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _load(a: ArtifactInfo) -> KnowledgeBase:
    info = kb_info(a)
    stamp = read_kb_json(a)["embedder"]
    if stamp["name"] != info.embedder or int(stamp["dim"]) != info.dim:
        raise KBNeedsRebuildError(
            f"kb.json of {a.ref} names embedder {stamp['name']!r} ({stamp['dim']} dims) but its "
            f"vectors were made with {info.embedder!r} ({info.dim} dims); run `luodi kb rebuild "
            f"{a.name} --embedder {stamp['name']}` to re-embed it, or restore kb.json"
        )
    chunks = read_chunks(a)
    documents = read_documents(a)
    by_id = {c.id: c for c in chunks}
    if not chunks:
        return KnowledgeBase(info, config_of(a), documents, by_id, None)
    if not (a.path / VECTORS).is_dir():
        raise KBNeedsRebuildError(
            f"{a.ref} has chunks but no index; run `luodi kb rebuild {a.name}`"
        )
    emb = embedder_of(a).get()
    try:
        vectors = load_vector_index(a.path / VECTORS, expect_dim=info.dim)
        lexical = load_lexical_index(a.path / LEXICAL)
    except BadInputError as exc:
        raise KBNeedsRebuildError(
            f"the index of {a.ref} cannot be used: {exc.message}; run `luodi kb rebuild {a.name}`"
        ) from None
    if len(vectors) != len(chunks) or len(lexical) != len(chunks):
        raise KBNeedsRebuildError(
            f"the index of {a.ref} holds {len(vectors)} vectors and {len(lexical)} texts for "
            f"{len(chunks)} chunks; run `luodi kb rebuild {a.name}`"
        )
    tags = {d.doc_id: d.tags for d in documents}
    retriever = Retriever(by_id, tags, emb, vectors, lexical)
    return KnowledgeBase(info, config_of(a), documents, by_id, retriever)


def search_kb(
    store: Store, ref: str, query: str, cfg: RetrieveConfig | None = None
) -> tuple[KBInfo, list[Retrieved]]:
    """Search version `ref` (see KnowledgeBase.search); returns the version searched too."""
    kb = open_kb(store, ref)
    return kb.info, kb.search(query, cfg)


def hit_dict(kb: str, h: Retrieved) -> dict[str, Any]:
    """One retrieved chunk as `luodi kb search --json` prints it and the API returns it."""
    c = h.chunk
    return {
        "rank": h.rank,
        "score": h.score,
        "dense": h.dense,
        "lexical": h.lexical,
        "chunk_id": c.id,
        "doc_id": c.doc_id,
        "source": c.source,
        "section": c.section,
        "page": c.page,
        "start": c.start,
        "end": c.end,
        "text": c.text,
        "knowledge_base": kb,
    }
