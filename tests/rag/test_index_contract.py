"""One contract for every index: Faiss and milvus-lite (vectors) and BM25 (its lexical analogue).

Each kind is wrapped in a small adapter (how to make items, queries and searches) and the same
tests run against all three; kind-specific checks compare against reference computations
(numpy cosine top-k, the Lucene BM25 formula) and Faiss' flat -> HNSW switch.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from luodi.errors import BadInputError
from luodi.rag.index import (
    INDEX_JSON,
    BM25Index,
    FaissIndex,
    Hit,
    IndexMismatchError,
    load_lexical_index,
    load_vector_index,
    new_lexical_index,
    new_vector_index,
    terms,
)

DIM = 16
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"]


@dataclass
class Kit:
    """How the contract drives one index kind."""

    kind: str

    @property
    def lexical(self) -> bool:
        return self.kind == "bm25"

    def new(self) -> Any:
        return new_lexical_index() if self.lexical else new_vector_index(self.kind, DIM)

    def items(self, n: int, seed: int = 0) -> list[Any]:
        """n items; item i is found first by query(i)."""
        if self.lexical:
            rng = np.random.default_rng(seed)
            return [
                f"doc{seed}x{i} " + " ".join(rng.choice(WORDS, size=4 + i % 5)) for i in range(n)
            ]
        v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
        return list(v / np.linalg.norm(v, axis=1, keepdims=True))

    def query_of(self, item: Any) -> Any:
        return item.split()[0] if self.lexical else item

    def add(self, index: Any, ids: list[str], items: list[Any]) -> None:
        index.add(ids, items if self.lexical else np.stack(items))

    def search(
        self, index: Any, query: Any, k: int, allow: Collection[str] | None = None
    ) -> list[Hit]:
        if self.lexical:
            return index.search(query, k, allow)
        return index.search(np.asarray(query)[None, :], k, allow)[0]

    def broad_query(self) -> Any:
        """A query many items match (for ordering checks)."""
        return "alpha bravo charlie delta" if self.lexical else np.ones(DIM, np.float32)

    def load(self, folder: Path) -> Any:
        return load_lexical_index(folder) if self.lexical else load_vector_index(folder, DIM)


@pytest.fixture(params=["faiss", "milvus", "bm25"])
def kit(request: pytest.FixtureRequest) -> Kit:
    return Kit(request.param)


def ids_of(hits: list[Hit]) -> list[str]:
    return [h.id for h in hits]


def test_add_search_save_load_round_trip(kit: Kit, tmp_path: Path) -> None:
    index = kit.new()
    items = kit.items(30)
    ids = [f"c{i:02d}" for i in range(30)]
    kit.add(index, ids, items)
    assert len(index) == 30
    before = [kit.search(index, kit.query_of(it), 5) for it in items]
    assert [h[0].id for h in before] == ids  # each item is its own best match
    index.save(tmp_path / "ix")
    meta = json.loads((tmp_path / "ix" / INDEX_JSON).read_text())
    assert meta["kind"] == kit.kind and meta["count"] == 30 and meta["files"]
    assert meta["dim"] == (None if kit.lexical else DIM)
    loaded = kit.load(tmp_path / "ix")
    assert len(loaded) == 30
    for it, hits in zip(items, before, strict=True):
        again = kit.search(loaded, kit.query_of(it), 5)
        assert ids_of(again) == ids_of(hits)
        np.testing.assert_allclose([h.score for h in again], [h.score for h in hits], rtol=1e-5)
    # The loaded index keeps working: add, remove, save again.
    extra = kit.items(3, seed=7)
    kit.add(loaded, ["n0", "n1", "n2"], extra)
    loaded.remove(["c00"])
    loaded.save(tmp_path / "ix2")
    final = kit.load(tmp_path / "ix2")
    assert len(final) == 32
    assert kit.search(final, kit.query_of(extra[1]), 1)[0].id == "n1"
    assert "c00" not in ids_of(kit.search(final, kit.broad_query(), 100))


def test_scores_are_ordered_and_k_is_respected(kit: Kit) -> None:
    index = kit.new()
    kit.add(index, [f"c{i}" for i in range(25)], kit.items(25))
    hits = kit.search(index, kit.broad_query(), 10)
    assert 1 <= len(hits) <= 10 and len(set(ids_of(hits))) == len(hits)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert kit.search(index, kit.broad_query(), 0) == []
    assert len(kit.search(index, kit.broad_query(), 1000)) <= 25


def test_removing_makes_a_document_disappear_and_ids_stay_stable(kit: Kit, tmp_path: Path) -> None:
    index = kit.new()
    items = kit.items(12)
    ids = [f"c{i}" for i in range(12)]
    kit.add(index, ids, items)
    score_of_5 = kit.search(index, kit.query_of(items[5]), 1)[0]
    index.remove(["c3", "c4", "unknown-id"])
    assert len(index) == 10
    for i, it in enumerate(items):
        found = ids_of(kit.search(index, kit.query_of(it), 12))
        assert "c3" not in found and "c4" not in found
        if i not in (3, 4):
            assert found[0] == f"c{i}"
    after = kit.search(index, kit.query_of(items[5]), 1)[0]
    assert after.id == "c5"
    if not kit.lexical:  # BM25 statistics (idf, mean length) change with the collection
        assert after.score == pytest.approx(score_of_5.score, abs=1e-5)
    # Re-adding a removed id and replacing a present one (same id, new content).
    new = kit.items(2, seed=3)
    kit.add(index, ["c3", "c6"], new)
    assert len(index) == 11
    assert kit.search(index, kit.query_of(new[0]), 1)[0].id == "c3"
    assert kit.search(index, kit.query_of(new[1]), 1)[0].id == "c6"
    assert "c6" not in ids_of(kit.search(index, kit.query_of(items[6]), 1))
    index.save(tmp_path / "ix")
    loaded = kit.load(tmp_path / "ix")
    assert ids_of(kit.search(loaded, kit.query_of(new[0]), 1)) == ["c3"]
    index.remove([f"c{i}" for i in range(12)])
    assert len(index) == 0 and kit.search(index, kit.broad_query(), 5) == []


def test_empty_index_searches_return_nothing(kit: Kit, tmp_path: Path) -> None:
    index = kit.new()
    assert len(index) == 0
    assert kit.search(index, kit.broad_query(), 5) == []
    if not kit.lexical:
        assert index.search(np.ones((3, DIM), np.float32), 5) == [[], [], []]
    index.save(tmp_path / "empty")
    loaded = kit.load(tmp_path / "empty")
    assert len(loaded) == 0 and kit.search(loaded, kit.broad_query(), 5) == []


def test_allow_restricts_results(kit: Kit) -> None:
    index = kit.new()
    items = kit.items(20)
    kit.add(index, [f"c{i}" for i in range(20)], items)
    allow = {"c2", "c9", "c11", "not-there"}
    hits = kit.search(index, kit.query_of(items[9]), 10, allow)
    assert hits and set(ids_of(hits)) <= allow and hits[0].id == "c9"
    assert kit.search(index, kit.query_of(items[9]), 10, set()) == []


def test_bad_input_is_refused(kit: Kit) -> None:
    index = kit.new()
    with pytest.raises(BadInputError, match="twice"):
        kit.add(index, ["a", "a"], kit.items(2))
    with pytest.raises(BadInputError, match="ids"):
        kit.add(index, ["a"], kit.items(2))
    if not kit.lexical:
        with pytest.raises(BadInputError, match="16-d"):
            index.add(["a"], np.ones((1, DIM + 1), np.float32))
        with pytest.raises(BadInputError, match="NaN"):
            index.add(["a"], np.full((1, DIM), np.nan, np.float32))
    assert len(index) == 0


def test_wrong_dimension_or_kind_at_load(kit: Kit, tmp_path: Path) -> None:
    index = kit.new()
    kit.add(index, ["a", "b"], kit.items(2))
    index.save(tmp_path / "ix")
    if kit.lexical:
        with pytest.raises(IndexMismatchError, match="not a vector index"):
            load_vector_index(tmp_path / "ix", DIM)
    else:
        with pytest.raises(IndexMismatchError, match=f"holds {DIM}-d vectors but 384-d"):
            load_vector_index(tmp_path / "ix", expect_dim=384)
        with pytest.raises(IndexMismatchError, match="not a lexical index"):
            load_lexical_index(tmp_path / "ix")
    with pytest.raises(IndexMismatchError, match="index.json is missing"):
        kit.load(tmp_path / "nowhere")


def test_a_corrupt_file_is_named(kit: Kit, tmp_path: Path) -> None:
    index = kit.new()
    kit.add(index, ["a", "b", "c"], kit.items(3))
    index.save(tmp_path / "ix")
    files = json.loads((tmp_path / "ix" / INDEX_JSON).read_text())["files"]
    for name in files:
        path = tmp_path / "ix" / name
        original = path.read_bytes()
        path.write_bytes(original[: len(original) // 2] + b"\x00garbage")
        with pytest.raises(IndexMismatchError, match="corrupt index file") as err:
            kit.load(tmp_path / "ix")
        assert str(path) in err.value.message
        path.write_bytes(original)
    kit.load(tmp_path / "ix")  # restored: loads again
    (tmp_path / "ix" / INDEX_JSON).write_text("{not json")
    with pytest.raises(IndexMismatchError, match=f"corrupt index file .*{INDEX_JSON}"):
        kit.load(tmp_path / "ix")


def test_vector_scores_equal_numpy_cosine() -> None:
    rng = np.random.default_rng(1)
    data = rng.normal(size=(200, DIM)).astype(np.float32) * 3  # not unit: indexes normalise
    queries = rng.normal(size=(5, DIM)).astype(np.float32)
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    ref = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
    for kind in ("faiss", "milvus"):
        index = new_vector_index(kind, DIM)
        index.add([f"v{i}" for i in range(200)], data)
        for q, row, hits in zip(queries, ref, index.search(queries, 10), strict=True):
            top = np.argsort(-row)[:10]
            assert ids_of(hits) == [f"v{i}" for i in top]
            np.testing.assert_allclose([h.score for h in hits], row[top], atol=1e-5)
            one = index.search(q, 10)[0]  # a 1-D query is one query
            assert ids_of(one) == ids_of(hits)
            np.testing.assert_allclose([h.score for h in one], row[top], atol=1e-5)


def test_faiss_switches_to_hnsw_by_size_and_keeps_recall(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    data = rng.normal(size=(600, DIM)).astype(np.float32)
    index = new_vector_index("faiss", DIM, hnsw_above=400)
    assert isinstance(index, FaissIndex)
    index.add([f"v{i}" for i in range(300)], data[:300])
    assert not index.is_hnsw
    index.add([f"v{i}" for i in range(300, 600)], data[300:])
    assert index.is_hnsw and len(index) == 600
    # efSearch was tuned on held-out vectors of that add to reach target_recall + 0.01.
    assert index.tuned is not None and index.tuned["count"] == 600
    assert index.tuned["recall"] >= 0.96 and index.ef == index.tuned["ef_search"]
    fixed = new_vector_index("faiss", DIM, structure="hnsw", ef_search=40)
    fixed.add([f"v{i}" for i in range(600)], data)
    assert fixed.tuned is None and fixed.ef == 40
    exact = new_vector_index("faiss", DIM, structure="flat")
    exact.add([f"v{i}" for i in range(600)], data)
    queries = rng.normal(size=(50, DIM)).astype(np.float32)
    got, ref = index.search(queries, 10), exact.search(queries, 10)
    recall = np.mean(
        [len(set(ids_of(g)) & set(ids_of(r))) / 10 for g, r in zip(got, ref, strict=True)]
    )
    assert recall >= 0.95
    # Removal on HNSW: dead labels are skipped (also after save/load).
    index.remove([f"v{i}" for i in range(0, 100)])
    assert all(int(h.id[1:]) >= 100 for hits in index.search(queries, 20) for h in hits)
    index.save(tmp_path / "h")
    meta = json.loads((tmp_path / "h" / INDEX_JSON).read_text())
    assert meta["params"]["built_as"] == "hnsw" and meta["params"]["hnsw_above"] == 400
    loaded = load_vector_index(tmp_path / "h", DIM)
    assert loaded.is_hnsw and len(loaded) == 500 and loaded.tuned == index.tuned
    assert loaded.search(data[450], 1)[0][0].id == "v450"
    assert all(int(h.id[1:]) >= 100 for hits in loaded.search(queries, 20) for h in hits)
    # A third dead compacts: rebuilt by size (400 <= hnsw_above: flat, exact), ids kept.
    index.remove([f"v{i}" for i in range(100, 200)])
    assert len(index) == 400 and sorted(index.ids()) == sorted(f"v{i}" for i in range(200, 600))
    assert not index.is_hnsw
    hits = index.search(data[450], 1)[0]
    assert hits[0].id == "v450" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    # A filter on HNSW that leaves few vectors is scored exactly.
    allowed = {f"v{i}" for i in range(200, 600, 37)}
    filtered = loaded.search(queries[0], 5, allowed)[0]
    brute = exact.search(queries[0], 600)[0]
    assert ids_of(filtered) == [h.id for h in brute if h.id in allowed][:5]


def lucene_bm25(docs: list[list[str]], query: list[str], k1: float = 1.5, b: float = 0.75):
    """Reference BM25 as Lucene (8+) scores it, which bm25s' "lucene" method implements:
    the classic formula without the constant (k1 + 1) factor, which changes no ranking."""
    n = len(docs)
    avgdl = sum(len(d) for d in docs) / n
    df = Counter(t for d in docs for t in set(d))
    out = []
    for d in docs:
        tf = Counter(d)
        s = 0.0
        for t in query:
            if t in tf:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                s += idf * tf[t] / (tf[t] + k1 * (1 - b + b * len(d) / avgdl))
        out.append(s)
    return out


def test_bm25_scores_equal_the_lucene_formula_with_jieba_terms() -> None:
    texts = [
        "员工每年享有带薪年假十天，年假需提前申请。",
        "病假需要医院证明。Sick leave needs a doctor's note.",
        "Annual leave: ten days per year. Leave requests go to HR.",
        "会议室预订请使用OA系统，VPN使用指南见内网。",
        "报销流程：填写报销单，部门经理审批，财务付款。",
    ]
    index = BM25Index()
    index.add([f"d{i}" for i in range(5)], texts)
    docs = [terms(t) for t in texts]
    assert (
        "带薪" in docs[0]
        and "申请" in docs[0]
        and "annual" in docs[2]
        and "leave" in docs[1]
        and "vpn" in docs[3]
    )
    assert "的" not in terms("我的年假") and "the" not in terms("the annual leave")
    for query in ["年假怎么申请", "annual leave", "Leave 病假", "报销审批流程", "VPN"]:
        q = terms(query)
        ref = lucene_bm25(docs, q)
        hits = index.search(query, 5)
        expected = sorted((i for i in range(5) if ref[i] > 0), key=lambda i: (-ref[i], i))
        assert ids_of(hits) == [f"d{i}" for i in expected], query
        np.testing.assert_allclose([h.score for h in hits], [ref[i] for i in expected], rtol=1e-5)
    assert index.search("的 了 the", 5) == []  # stop words alone match nothing
