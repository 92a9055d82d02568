"""Vector and lexical indexes behind one protocol each (see base.py for the contracts).

Importing this package registers the kinds: vector "faiss" (flat/HNSW, the default) and
"milvus" (milvus-lite file or a Milvus server), lexical "bm25" (bm25s + jieba). The engines
themselves are imported on first use.
"""

from __future__ import annotations

from luodi.rag.index import bm25, faiss, milvus  # noqa: F401  (registration)
from luodi.rag.index.base import (
    INDEX_JSON,
    LEXICAL_INDEXES,
    VECTOR_INDEXES,
    Hit,
    IndexKind,
    IndexMismatchError,
    LexicalIndex,
    VectorIndex,
    load_lexical_index,
    load_vector_index,
    new_lexical_index,
    new_vector_index,
    read_index_json,
)
from luodi.rag.index.bm25 import BM25Index, terms
from luodi.rag.index.faiss import FaissIndex
from luodi.rag.index.milvus import MilvusIndex

__all__ = [
    "INDEX_JSON",
    "LEXICAL_INDEXES",
    "VECTOR_INDEXES",
    "BM25Index",
    "FaissIndex",
    "Hit",
    "IndexKind",
    "IndexMismatchError",
    "LexicalIndex",
    "MilvusIndex",
    "VectorIndex",
    "load_lexical_index",
    "load_vector_index",
    "new_lexical_index",
    "new_vector_index",
    "read_index_json",
    "terms",
]
