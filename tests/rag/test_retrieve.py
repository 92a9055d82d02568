"""Retrieval (luodi.rag.retrieve): RRF and score fusion, dense/lexical/hybrid, filters,
threshold, rerank.

Dense search uses the real all-MiniLM-L6-v2 embedder (it ships its weights); the corpus is a
dozen chunks, so the whole file runs in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from luodi.data.loaders.base import Segment
from luodi.errors import BadInputError, NotFoundError
from luodi.rag.chunk import Chunk, ChunkConfig, chunk_segments
from luodi.rag.embed import open_embedder
from luodi.rag.index import Hit, new_lexical_index, new_vector_index
from luodi.rag.retrieve import FUSIONS, RetrieveConfig, Retriever, fuse_scores, minmax, rrf

DOCS = {
    "hr": (
        "policies/hr_handbook.md",
        ["hr", "policy"],
        [
            "Staff receive fifteen paid holidays yearly.",
            "Expense reports are submitted monthly through the finance portal.",
            "Employees may work remotely two weekdays after their probation ends.",
            "Parking permits for the staff garage are issued by facilities.",
        ],
    ),
    "it": (
        "it/printers.txt",
        ["it"],
        [
            "Printer code E4711 means the toner cartridge is empty.",
            "Reset a forgotten password at the self-service desk.",
            "Laptops are replaced every four years by the IT department.",
        ],
    ),
    "zh": (
        "制度/财务制度.docx",
        ["policy", "finance"],
        [
            "报销流程：填写报销单，部门经理审批，财务部付款。",
            "差旅住宿标准为每晚不超过五百元。",
            "发票须在费用发生后三十天内提交。",
        ],
    ),
}


@pytest.fixture(scope="module")
def retriever() -> Retriever:
    emb = open_embedder("minilm")
    chunks: dict[str, Chunk] = {}
    for doc_id, (source, _, paragraphs) in DOCS.items():
        # One section per paragraph, so that each is one chunk.
        segments = [Segment(p, f"{n + 1} part") for n, p in enumerate(paragraphs)]
        for c in chunk_segments(doc_id, source, segments, ChunkConfig(size=80, overlap=0)):
            chunks[c.id] = c
    assert len(chunks) == sum(len(p) for _, _, p in DOCS.values())  # one chunk per paragraph
    ids = list(chunks)
    vectors = new_vector_index("faiss", emb.dim)
    vectors.add(ids, emb.embed_passages([chunks[i].text for i in ids]))
    lexical = new_lexical_index()
    lexical.add(ids, [chunks[i].text for i in ids])
    tags = {doc_id: t for doc_id, (_, t, _) in DOCS.items()}
    return Retriever(chunks, tags, emb, vectors, lexical)


def texts(results) -> list[str]:
    return [r.chunk.text for r in results]


def test_rrf_equals_a_hand_computation() -> None:
    fused = rrf([["a", "b", "c"], ["c", "a", "d"]], k=60)
    expected = {
        "a": 1 / 61 + 1 / 62,
        "b": 1 / 62,
        "c": 1 / 63 + 1 / 61,
        "d": 1 / 63,
    }
    assert [i for i, _ in fused] == ["a", "c", "b", "d"]
    for i, score in fused:
        assert score == pytest.approx(expected[i], abs=1e-15)
    # Ties keep first-seen order; an id repeated in one ranking counts once, at its best rank.
    assert rrf([["x", "y"], ["y", "x"]], k=1) == [("x", 1 / 2 + 1 / 3), ("y", 1 / 3 + 1 / 2)]
    assert rrf([["x", "x", "y"]], k=10) == [("x", 1 / 11), ("y", 1 / 13)]
    assert rrf([], k=60) == [] and rrf([[], []]) == []


def test_hybrid_finds_what_only_one_retriever_finds(retriever: Retriever) -> None:
    query = "How much vacation time do employees get? E4711"
    holidays = DOCS["hr"][2][0]
    printer = DOCS["it"][2][0]
    small = {"candidates": 2, "top_k": 4}
    dense = texts(retriever.search(query, RetrieveConfig(mode="dense", **small)))
    lexical = texts(retriever.search(query, RetrieveConfig(mode="lexical", **small)))
    assert holidays in dense and printer not in dense  # no shared word with "holidays"
    assert printer in lexical and holidays not in lexical  # only "e4711" matches
    hybrid = retriever.search(query, RetrieveConfig(mode="hybrid", **small))
    by_text = {r.chunk.text: r for r in hybrid}
    assert holidays in by_text and printer in by_text
    assert by_text[holidays].lexical is None and by_text[holidays].dense is not None
    assert by_text[printer].dense is None and by_text[printer].lexical is not None
    assert [r.rank for r in hybrid] == list(range(1, len(hybrid) + 1))


def test_score_fusion_equals_a_hand_computation() -> None:
    dense = [Hit("a", 0.9), Hit("b", 0.8), Hit("c", 0.5)]
    lexical = [Hit("c", 12.0), Hit("d", 4.0), Hit("a", 2.0)]
    assert minmax(dense) == pytest.approx({"a": 1.0, "b": 0.75, "c": 0.0})
    assert minmax(lexical) == pytest.approx({"c": 1.0, "d": 0.2, "a": 0.0})
    fused = dict(fuse_scores(dense, lexical, RetrieveConfig(dense_weight=0.7)))
    expected = {"a": 0.7, "b": 0.7 * 0.75, "c": 0.3, "d": 0.3 * 0.2}
    assert fused == pytest.approx(expected)
    assert [i for i, _ in fuse_scores(dense, lexical, RetrieveConfig(dense_weight=0.7))] == [
        "a", "b", "c", "d"
    ]  # fmt: skip
    # Weight 0 is the lexical order (ids only in the dense list tie at 0, in first-seen order).
    only_lexical = fuse_scores(dense, lexical, RetrieveConfig(dense_weight=0.0))
    assert [i for i, _ in only_lexical] == ["c", "d", "a", "b"]
    # One hit, or equal scores, normalise to 1 (nothing to tell apart); empty lists fuse to [].
    assert minmax([Hit("x", 3.0)]) == {"x": 1.0} and minmax([]) == {}
    assert fuse_scores([], [], RetrieveConfig()) == []
    assert set(FUSIONS) == {"rrf", "score"}
    with pytest.raises(ValueError):
        RetrieveConfig(fusion="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RetrieveConfig(dense_weight=1.5)


def test_hybrid_score_fusion_over_the_top_of_each_list(retriever: Retriever) -> None:
    query = "staff expense reports, printer toner, password reset and laptops"
    deep = {"top_k": 20, "candidates": 20}
    dense = retriever.search(query, RetrieveConfig(mode="dense", **deep))
    lexical = retriever.search(query, RetrieveConfig(mode="lexical", **deep))
    assert len(dense) > 3 and len(lexical) > 3
    for depth, weight in ((3, 0.7), (20, 0.5)):
        d = minmax([Hit(r.chunk.id, r.score) for r in dense[:depth]])
        lx = minmax([Hit(r.chunk.id, r.score) for r in lexical[:depth]])
        expected = {i: weight * d.get(i, 0) + (1 - weight) * lx.get(i, 0) for i in d | lx}
        cfg = RetrieveConfig(fusion="score", dense_weight=weight, fuse_depth=depth, **deep)
        hybrid = retriever.search(query, cfg)
        # Only the top `depth` of each list take part; every one of them is returned.
        assert {r.chunk.id for r in hybrid} == set(expected)
        for r in hybrid:
            assert r.score == pytest.approx(expected[r.chunk.id])
        scores = [r.score for r in hybrid]
        assert scores == sorted(scores, reverse=True)
    # Neither list's top wins alone: the laptops chunk leads dense, the password chunk leads
    # lexical and is a close second on dense, so its fused score is the highest.
    assert dense[0].chunk.text == DOCS["it"][2][2] and lexical[0].chunk.text == DOCS["it"][2][1]
    assert hybrid[0].chunk.text == DOCS["it"][2][1]
    # The default is score fusion of the top 10 with dense weight 0.6.
    default = retriever.search(query, RetrieveConfig(top_k=20))
    explicit = RetrieveConfig(top_k=20, fusion="score", fuse_depth=10, dense_weight=0.6)
    assert [(r.chunk.id, r.score) for r in default] == [
        (r.chunk.id, r.score) for r in retriever.search(query, explicit)
    ]


def test_hybrid_scores_are_rrf_of_the_two_rankings(retriever: Retriever) -> None:
    query = "submit expense reports to the finance portal"
    cfg = RetrieveConfig(
        mode="hybrid", fusion="rrf", fuse_depth=20, top_k=20, candidates=20, rrf_k=10
    )
    dense = retriever.search(query, RetrieveConfig(mode="dense", top_k=20, candidates=20))
    lexical = retriever.search(query, RetrieveConfig(mode="lexical", top_k=20, candidates=20))
    expected = dict(rrf([[r.chunk.id for r in dense], [r.chunk.id for r in lexical]], k=10))
    hybrid = retriever.search(query, cfg)
    assert len(hybrid) == len(expected)
    for r in hybrid:
        assert r.score == pytest.approx(expected[r.chunk.id])
    assert hybrid[0].chunk.text == DOCS["hr"][2][1]
    scores = [r.score for r in hybrid]
    assert scores == sorted(scores, reverse=True)
    # fuse_depth cuts each ranking before fusion.
    top3 = retriever.search(query, cfg.model_copy(update={"fuse_depth": 3}))
    expected3 = dict(rrf([[r.chunk.id for r in dense[:3]], [r.chunk.id for r in lexical[:3]]], 10))
    assert {r.chunk.id: r.score for r in top3} == pytest.approx(expected3)
    dense_scores = [r.score for r in dense]
    assert dense_scores == sorted(dense_scores, reverse=True) and dense[0].dense == dense[0].score


def test_chinese_query_matches_through_jieba_terms(retriever: Retriever) -> None:
    lexical = retriever.search("报销需要谁审批？", RetrieveConfig(mode="lexical", top_k=3))
    assert texts(lexical)[0] == DOCS["zh"][2][0]
    assert all(r.chunk.doc_id == "zh" for r in lexical)
    # minilm cannot read Chinese; hybrid still ranks the chunk first through its BM25 terms.
    hybrid = retriever.search("发票什么时候提交", RetrieveConfig(top_k=3, min_score=0.5))
    assert texts(hybrid) == [DOCS["zh"][2][2]]


def test_filters_by_document_and_tag(retriever: Retriever) -> None:
    query = "paid holidays, printer toner and travel hotel limits"
    for ref in ("it", "it/printers.txt", "printers.txt"):
        got = retriever.search(query, RetrieveConfig(documents=[ref], top_k=10))
        assert {r.chunk.doc_id for r in got} == {"it"} and len(got) == 3
    got = retriever.search(query, RetrieveConfig(tags=["finance"], top_k=10, mode="dense"))
    assert {r.chunk.doc_id for r in got} == {"zh"}
    got = retriever.search(query, RetrieveConfig(tags=["policy"], top_k=10, mode="dense"))
    assert {r.chunk.doc_id for r in got} == {"hr", "zh"} and len(got) == 7
    both = RetrieveConfig(tags=["policy"], documents=["hr_handbook.md"], top_k=10)
    assert {r.chunk.doc_id for r in retriever.search(query, both)} == {"hr"}
    with pytest.raises(NotFoundError, match="no document 'nope.pdf'.*printers.txt"):
        retriever.search(query, RetrieveConfig(documents=["nope.pdf"]))
    with pytest.raises(NotFoundError, match="tagged 'legal'.*finance"):
        retriever.search(query, RetrieveConfig(tags=["legal"]))
    with pytest.raises(ValueError, match="empty"):
        RetrieveConfig(tags=[])


def test_min_score_drops_what_is_not_relevant(retriever: Retriever) -> None:
    off_topic = "quantum chromodynamics lattice gauge simulation"
    assert len(retriever.search(off_topic, RetrieveConfig(top_k=3))) == 3  # no threshold
    assert retriever.search(off_topic, RetrieveConfig(top_k=3, min_score=0.3)) == []
    assert retriever.search(off_topic, RetrieveConfig(mode="dense", min_score=0.3)) == []
    on_topic = retriever.search("How do I reset my password?", RetrieveConfig(min_score=0.3))
    assert texts(on_topic)[0] == DOCS["it"][2][1]
    dense = retriever.search("forgotten password reset", RetrieveConfig(mode="dense", top_k=10))
    cut = retriever.search(
        "forgotten password reset", RetrieveConfig(mode="dense", top_k=10, min_score=0.2)
    )
    assert texts(cut) == [r.chunk.text for r in dense if r.score >= 0.2] and len(cut) < len(dense)


class FakeReranker:
    """Scores a passage by how many characters of the word "toner" it has (a stand-in)."""

    def __init__(self) -> None:
        self.pairs: list[tuple[str, str]] = []

    def predict(self, pairs: list[tuple[str, str]]) -> Sequence[float]:
        self.pairs.extend(pairs)
        return np.array([float(p.count("toner")) + len(p) / 1000 for _, p in pairs])


def test_rerank_reorders_with_the_configured_model(retriever: Retriever) -> None:
    fake = FakeReranker()
    opened: list[str] = []

    def open_fake(path: str) -> FakeReranker:
        opened.append(path)
        return fake

    rr = Retriever(
        retriever.chunks,
        retriever.doc_tags,
        retriever.embedder,
        retriever.vectors,
        retriever.lexical,
        open_reranker=open_fake,
    )
    query = "printer problems and laptops"
    cfg = RetrieveConfig(top_k=3, candidates=10, rerank="/models/fake-cross-encoder")
    got = rr.search(query, cfg)
    assert opened == ["/models/fake-cross-encoder"]
    assert got[0].chunk.text == DOCS["it"][2][0]  # the only one mentioning toner
    expected = sorted((p for _, p in fake.pairs), key=lambda p: -(p.count("toner") + len(p) / 1000))
    assert texts(got) == expected[:3]
    assert all(q == query for q, _ in fake.pairs)
    assert got[0].score == pytest.approx(1 + len(got[0].chunk.text) / 1000)
    with pytest.raises(NotFoundError, match="rerank model folder .*does-not-exist"):
        retriever.search(query, RetrieveConfig(rerank="/tmp/does-not-exist/cross-encoder"))


def test_bad_queries_and_top_k(retriever: Retriever) -> None:
    with pytest.raises(BadInputError, match="empty"):
        retriever.search("   ", RetrieveConfig())
    got = retriever.search("staff employees weekdays", RetrieveConfig(top_k=2))
    assert len(got) == 2
    with pytest.raises(ValueError):
        RetrieveConfig(top_k=0)
    with pytest.raises(ValueError):
        RetrieveConfig(mode="semantic")  # type: ignore[arg-type]
