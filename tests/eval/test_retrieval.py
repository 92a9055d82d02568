"""The `retrieval` eval task: hit@k / recall@k / MRR per mode against hand computations on a
tiny knowledge base, passages cut by chunk boundaries, faithfulness of grounded answers (a
target that copies a cited sentence, one that invents), and a suite run through `luodi eval
run` against a fake OpenAI-compatible endpoint.

The in-process knowledge base embeds with a fake embedder whose vectors are chosen by hand, so
every dense ranking is known; BM25 (bm25s + jieba) is the real one, on questions that share
terms with exactly one document. The CLI test uses the real e5 embedder.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from luodi.data.datasets import save_dataset
from luodi.data.records import get_kind, make_record
from luodi.data.report import DatasetReport
from luodi.errors import BadInputError, NotFoundError
from luodi.eval import metrics as M
from luodi.eval.retrieval_metrics import GoldIndex, faithfulness_of, sentences
from luodi.eval.tasks import TASKS, TaskEnv
from luodi.eval.tasks.retrieval import gold_of
from luodi.progress import no_progress
from luodi.rag import embed
from luodi.rag.chunk import Chunk
from luodi.rag.kb import KBConfig, add_documents, create_kb, open_kb
from luodi.rag.retrieve import RetrieveConfig
from luodi.store import Store
from tests.helpers import run_cli, running_server

DOCS = {
    "leave.txt": "Annual leave: every employee receives fifteen vacation days each year.",
    "pay.txt": "Salary: wages are paid by bank transfer on the tenth of each month.",
    "printer.txt": "Printer: error E4 means the toner cartridge is empty.",
}
# Unit vectors of the documents (found by their first word) and of the questions: the dense
# rankings below follow from these cosines by hand.
DOC_VECTORS = {"Annual": (1, 0, 0, 0), "Salary": (0, 1, 0, 0), "Printer": (0, 0, 1, 0)}
QUESTIONS: list[dict[str, Any]] = [
    # dense A .949, B .316, C 0 -> A first; lexical: vacation, days, year only in A.
    {"question": "How many vacation days per year?", "vec": (3, 1, 0, 0),
     "document": "leave.txt", "passage": "fifteen vacation days"},
    # dense A .894, B .447 -> B second; lexical: bank, transfer only in B.
    {"question": "When is the bank transfer?", "vec": (2, 1, 0, 0),
     "document": "pay.txt", "passage": "paid by bank transfer on the tenth"},
    # two passages; dense C .894, B .447, A 0; lexical: vacation only in A.
    {"question": "What about vacation?", "vec": (0, 1, 2, 0),
     "document": ["printer.txt", "leave.txt"],
     "passage": ["error E4 means the toner cartridge is empty", "fifteen vacation days"]},
    # dense B .894, A .447, C 0 -> C third (beyond k=2); lexical: no shared term.
    {"question": "Whom should I ask?", "vec": (1, 2, 0, 0),
     "document": "printer.txt", "passage": "toner cartridge is empty"},
]  # fmt: skip
QUERY_VECTORS = {q["question"]: q["vec"] for q in QUESTIONS}


class HandEmbedder:
    """Vectors chosen by hand: documents by their first word, questions by their text."""

    name, dim = "hand", 4

    @staticmethod
    def _unit(rows: list[Sequence[float]]) -> np.ndarray:
        a = np.asarray(rows, dtype=np.float32)
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._unit([QUERY_VECTORS.get(t, (0, 0, 0, 1)) for t in texts])

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._unit([DOC_VECTORS.get(t.split()[0].rstrip(":"), (0, 0, 0, 1)) for t in texts])

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]


def records(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """qa records as `luodi data ingest` makes them from a .jsonl of these rows."""
    kind = get_kind("qa")
    out = []
    for n, r in enumerate(rows, 1):
        meta = {k: v for k, v in r.items() if k not in ("question", "answer", "vec")}
        out.append(
            make_record(
                kind, source="q.jsonl", source_sha256="0" * 64, location=f"line {n}", ordinal=n,
                meta=meta, messages=[{"role": "user", "content": r["question"]},
                                     {"role": "assistant", "content": r.get("answer", "x")}],
            )
        )  # fmt: skip
    return out


@pytest.fixture
def kb_store(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setattr(embed, "open_embedder", lambda name: HandEmbedder())
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text + "\n", encoding="utf-8")
    create_kb(store, KBConfig(name="tiny", embedder="hand"))
    add_documents(store, "tiny", [folder])
    assert len(open_kb(store, "tiny").chunks) == 3  # one chunk per document
    return store


def task(**kw: Any) -> Any:
    return TASKS.get("retrieval").model_validate(
        {"task": "retrieval", "dataset": "q", "knowledge_base": "tiny", **kw}
    )


def env(store: Store) -> TaskEnv:
    return TaskEnv(seed=0, load=lambda r, s: [], splits=lambda r: [], extra={"store": store})


class NoTarget:
    """A target that must not be called."""

    ref, artifact, capabilities = "none", None, frozenset({"generate"})

    def generate(self, prompts: Any, params: Any) -> list[str]:
        raise AssertionError("the target was called")


# -- rank metrics -----------------------------------------------------------------------------
def test_metrics_equal_hand_computations_for_each_mode(kb_store: Store) -> None:
    bad = [
        {"question": "Is this in the file?", "document": "pay.txt", "passage": "not in the file"},
        {"question": "No gold at all?"},
    ]
    res = task(k=[1, 2], faithfulness=False, retrieve={"fusion": "rrf"}).run(
        NoTarget(), records(QUESTIONS + bad), no_progress, env(kb_store)
    )
    # first ranks per question (None: not within the top 2), worked out in QUESTIONS' comments;
    # hybrid = RRF(k=60) of the full dense ranking and the lexical one (fuse_depth 10 > 3):
    # Q2 B 1/62+1/61 > A 1/61; Q3 A 1/63+1/61 > C 1/61 > B 1/62; Q4 has no lexical hit.
    expected_ranks = {
        "dense": [[1], [2], [1, None], [None]],
        "lexical": [[1], [1], [None, 1], [None]],
        "hybrid": [[1], [1], [2, 1], [None]],
    }
    assert [it["ranks"] for it in res.items] == [
        {m: expected_ranks[m][i] for m in ("dense", "lexical", "hybrid")} for i in range(4)
    ]
    expected = {
        "dense": {"hit@1": 0.5, "hit@2": 0.75, "recall@1": 0.375, "recall@2": 0.625, "mrr": 0.625},
        "lexical": {"hit@1": 0.75, "hit@2": 0.75, "recall@1": 0.625, "recall@2": 0.625,
                    "mrr": 0.75},
        "hybrid": {"hit@1": 0.75, "hit@2": 0.75, "recall@1": 0.625, "recall@2": 0.75,
                   "mrr": 0.75},
    }  # fmt: skip
    got = {m: {n: res.metrics[f"{m}.{n}"] for n in expected[m]} for m in expected}
    assert got == expected  # quarters: exact in floating point
    assert set(res.metrics) == {f"{m}.{n}" for m in expected for n in expected[m]}
    # per item: Q3 dense finds one of two passages at rank 1
    q3 = res.items[2]["scores"]
    assert (q3["dense.hit@1"], q3["dense.recall@2"], q3["dense.mrr"]) == (1.0, 0.5, 1.0)
    # the bad rows are reported, not scored
    assert (res.counts.scored, res.counts.skipped, res.counts.errors) == (4, 1, 1)
    reasons = {p.kind: p.reason for p in res.problems}
    assert "'not in the file' is not in pay.txt" in reasons["error"]
    assert "no gold `passage`" in reasons["skipped"]
    assert res.prompt["knowledge_base"] == "tiny:v2"


def test_rankings_are_those_of_a_knowledge_base_search(kb_store: Store) -> None:
    res = task(k=[1, 2], faithfulness=False).run(
        NoTarget(), records(QUESTIONS), no_progress, env(kb_store)
    )
    kb = open_kb(kb_store, "tiny")
    for q, item in zip(QUESTIONS, res.items, strict=True):
        for mode in ("dense", "lexical", "hybrid"):
            hits = kb.search(q["question"], RetrieveConfig(mode=mode, top_k=2))
            assert [h["chunk_id"] for h in item["retrieved"][mode]] == [h.chunk.id for h in hits]


def _chunk(doc: str, text: str, start: int) -> Chunk:
    return Chunk(f"{doc}{start}", doc, f"{doc}.txt", text, None, None, start, start + len(text))


def test_a_passage_cut_by_a_chunk_boundary_needs_both_chunks() -> None:
    # document "Alpha beta. Gamma\ndelta epsilon." cut after "Gamma"
    one = _chunk("d", "Alpha beta. Gamma", 0)
    two = _chunk("d", "delta epsilon.", 18)
    other = _chunk("e", "Gamma delta", 0)  # the same words in another document do not count
    index = GoldIndex({c.id: c for c in (one, two, other)})
    g = gold_of(records([{"question": "q?", "document": "d.txt",
                          "passage": "Gamma delta"}])[0])  # fmt: skip
    located = index.locate(g)
    assert not isinstance(located, str)
    assert index.first_ranks([other, one, two], located) == [3]
    assert index.first_ranks([two, other], located) == [None]
    # whitespace is ignored: the passage spans the line break as "Gamma delta"
    assert index.first_ranks([two, one], located) == [2]


# -- faithfulness -----------------------------------------------------------------------------
def test_faithfulness_of_equals_a_hand_computation() -> None:
    sources = [
        "年休假当年未休完的，可顺延至次年 3 月 31 日。病假须提供医院证明。",
        "Pay day is the tenth.",
    ]
    copied = "年休假当年未休完的，可顺延至次年 3 月 31 日。[1]"
    assert faithfulness_of(copied, sources, 0.5)[:2] == (1.0, True)
    invented = "公司每年组织员工去火星旅游。[1]"
    f1 = max(M.token_f1("公司每年组织员工去火星旅游。", s) for s in sentences(sources[0]))
    assert f1 < 0.5
    share, cites, detail = faithfulness_of(invented, sources, 0.5)
    assert (share, cites, detail[0]["f1"]) == (0.0, True, round(f1, 4))
    # two sentences, one supported; no citation: every source counts as cited
    share, cites, _ = faithfulness_of("Pay day is the tenth. Bonuses come in May.", sources, 0.5)
    assert (share, cites) == (0.5, False)
    # a sentence supported by source 2 is not supported when the answer cites only source 1
    assert faithfulness_of("Pay day is the tenth [1].", sources, 0.5)[0] == 0.0
    assert faithfulness_of("", sources, 0.5)[0] == 0.0


def first_source_sentence(system: str) -> str:
    """The first sentence of source [1] in a grounded system prompt (luodi.rag.answer)."""
    body = system.split("[1] (", 1)[1].split("\n", 1)[1].split("\n\n[2]", 1)[0]
    return sentences(body)[0]


class Copier:
    """Answers with the first sentence of source 1, cited; or with an invention."""

    ref, artifact, capabilities = "copier", None, frozenset({"generate"})

    def __init__(self, invent: bool = False) -> None:
        self.invent, self.prompts = invent, []

    def generate(self, prompts: Any, params: Any) -> list[str]:
        self.prompts.extend(prompts)
        if self.invent:
            return ["The cafeteria serves free pizza on Fridays [1]." for _ in prompts]
        return [first_source_sentence(p[0]["content"]) + " [1]" for p in prompts]


def test_faithfulness_is_one_for_copied_sentences_and_zero_for_inventions(
    kb_store: Store,
) -> None:
    t = task(k=[1, 2], answer_top_k=2)
    copier = Copier()
    res = t.run(copier, records(QUESTIONS), no_progress, env(kb_store))
    assert (res.metrics["faithfulness"], res.metrics["citation_rate"]) == (1.0, 1.0)
    assert len(copier.prompts) == 4 and res.details["answered"] == 4
    # the prompt is the gateway's grounding: the question, with 2 numbered hybrid sources
    kb = open_kb(kb_store, "tiny")
    hits = kb.search(QUESTIONS[1]["question"], RetrieveConfig(mode="hybrid", top_k=2))
    system = copier.prompts[1][0]["content"]
    assert copier.prompts[1][1] == {"role": "user", "content": QUESTIONS[1]["question"]}
    assert system.index(hits[0].chunk.text) < system.index(hits[1].chunk.text)
    assert "[3]" not in system
    assert res.items[1]["sources"] == [h.chunk.id for h in hits]

    res = t.run(Copier(invent=True), records(QUESTIONS), no_progress, env(kb_store))
    assert (res.metrics["faithfulness"], res.metrics["citation_rate"]) == (0.0, 1.0)


def test_retrieval_only_never_calls_the_target_and_answers_need_generation(
    kb_store: Store,
) -> None:
    res = task(faithfulness=False).run(NoTarget(), records(QUESTIONS), no_progress, env(kb_store))
    assert "faithfulness" not in res.metrics and res.counts.scored == 4

    class Scorer:
        ref, artifact, capabilities = "clf", None, frozenset({"classify"})

    task(faithfulness=False).check_target(Scorer())  # type: ignore[arg-type]
    with pytest.raises(BadInputError, match="faithfulness: false"):
        task().check_target(Scorer())  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="knowledge base 'nope' not found"):
        task(knowledge_base="nope").run(NoTarget(), [], no_progress, env(kb_store))


# -- through the CLI --------------------------------------------------------------------------
def fake_openai_app() -> Any:
    """An OpenAI-compatible server whose model copies the first sentence of source [1]."""
    app = FastAPI()

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "copier", "object": "model", "created": 0,
                                            "owned_by": "test"}]}  # fmt: skip

    @app.post("/v1/completions")
    def completions() -> JSONResponse:
        return JSONResponse({"error": {"message": "no completions"}}, status_code=404)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        body = await request.json()
        reply = first_source_sentence(body["messages"][0]["content"]) + " [1]"
        return {
            "id": "c1", "object": "chat.completion", "created": 0, "model": "copier",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": reply}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }  # fmt: skip

    return app


@pytest.mark.slow
def test_a_suite_runs_the_retrieval_task_through_luodi_eval_run(tmp_path: Path) -> None:
    home = tmp_path / "home"
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text + "\n", encoding="utf-8")
    rows = [{k: v for k, v in q.items() if k != "vec"} | {"answer": "-"} for q in QUESTIONS]
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    run_cli("kb", "create", "tiny", "--embedder", "e5", home=home)
    run_cli("kb", "add", "tiny", str(docs), home=home)
    run_cli("data", "ingest", str(questions), "--kind", "qa", "--name", "q", home=home)
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: rag\ntasks:\n"
        "  - {task: retrieval, dataset: q, knowledge_base: tiny, k: [1, 2], answer_top_k: 2}\n"
        "  - {task: retrieval, name: search-only, dataset: q, knowledge_base: tiny:v2,\n"
        "     faithfulness: false}\n",
        encoding="utf-8",
    )
    with running_server(fake_openai_app()) as url:
        out = run_cli("eval", "run", f"openai:{url}/v1#copier", "--suite", str(suite), "--json",
                      home=home)  # fmt: skip
    res = json.loads(out.stdout)
    tasks = {t["name"]: t for t in res["tasks"]}
    assert res["status"] == "complete"
    assert tasks["retrieval"]["metrics"]["faithfulness"] == 1.0
    assert "faithfulness" not in tasks["search-only"]["metrics"]
    assert tasks["search-only"]["counts"]["scored"] == 4
    # the numbers are the task's own, computed in-process on the same store
    from luodi.config import Settings

    store = Store(Settings(home=home))
    try:
        q = [r for b in _batches(store) for r in b]
        mine = task(k=[1, 2], faithfulness=False).run(NoTarget(), q, no_progress, env(store))
    finally:
        store.close()
    for name, value in mine.metrics.items():
        assert math.isclose(tasks["retrieval"]["metrics"][name], value), name
    run_json = json.loads((Path(res["path"]) / "run.json").read_text(encoding="utf-8"))
    assert run_json["prompts"]["retrieval"]["knowledge_base"] == "tiny:v2"
    assert re.fullmatch(r"[0-9a-f]{64}", run_json["prompts"]["retrieval"]["knowledge_base_hash"])


def _batches(store: Store) -> Any:
    from luodi.data import datasets as D

    return D.iter_batches(D.resolve(store, "q"), None)


def test_saved_qa_datasets_keep_the_gold_fields(store: Store) -> None:
    """The record fields the task reads survive a dataset version round trip."""
    report = DatasetReport(name="q", stage="ingest", record_kind="qa")
    save_dataset(store, report, [records(QUESTIONS)])
    (rec,) = [r for b in _batches(store) for r in b][2:3]
    g = gold_of(rec)
    assert not isinstance(g, str)
    assert g.documents == ["printer.txt", "leave.txt"] and len(g.passages) == 2


# -- runs without a target; the knowledge base as a parent ------------------------------------
def _suite(**kw: Any) -> Any:
    from luodi.eval.suite import parse_suite

    return parse_suite(
        {"name": "rag", "tasks": [{"task": "retrieval", "dataset": "q", "k": [1, 2],
                                   "knowledge_base": "tiny", "faithfulness": False,
                                   "retrieve": {"fusion": "rrf"}, **kw}]}
    )  # fmt: skip


def test_a_retrieval_only_suite_runs_without_a_target_and_lists_the_kb_as_parent(
    kb_store: Store,
) -> None:
    from luodi.eval import run_eval

    report = DatasetReport(name="q", stage="ingest", record_kind="qa")
    save_dataset(kb_store, report, [records(QUESTIONS)])
    res = run_eval(kb_store, None, _suite())
    assert (res.target, res.target_hash, res.status) == ("none", None, "complete")
    # the same numbers as the task run on its own (hand-checked in the first test)
    assert res.tasks[0].metrics["hybrid.recall@2"] == 0.75
    run = kb_store.resolve(res.run, "eval_run")
    assert run.meta["target"] == {"ref": "none", "kind": "none", "content_hash": None}
    kb = kb_store.resolve("tiny", "knowledge_base")
    assert {(p.kind, p.ref, p.role, p.content_hash) for p in run.parents} == {
        ("dataset", "q:v1", "data", kb_store.resolve("q", "dataset").content_hash),
        ("knowledge_base", "tiny:v2", "knowledge_base", kb.content_hash),
    }
    assert {(p.ref, p.role) for p in res.parents} == {
        ("q:v1", "data"),
        ("tiny:v2", "knowledge_base"),
    }
    run_json = json.loads((run.path / "run.json").read_text(encoding="utf-8"))
    assert run_json["target"]["kind"] == "none"
    assert run_json["prompts"]["retrieval"]["retrieve"]["fusion"] == "rrf"
    assert run_json["inputs"]["retrieval"] == [
        {"kind": "knowledge_base", "ref": "tiny:v2", "content_hash": kb.content_hash,
         "role": "knowledge_base"}
    ]  # fmt: skip
    # the lineage walks from the run through the knowledge base to its source files
    node = kb_store.lineage(res.run, "eval_run")
    (kb_node,) = [p for p in node.parents if p.kind == "knowledge_base"]
    assert sorted(Path(s["path"]).name for s in kb_node.sources) == sorted(DOCS)


def test_runs_that_cannot_work_fail_before_anything_is_stored(kb_store: Store) -> None:
    from luodi.eval import run_eval

    report = DatasetReport(name="q", stage="ingest", record_kind="qa")
    save_dataset(kb_store, report, [records(QUESTIONS)])
    with pytest.raises(BadInputError, match=r"task\(s\) retrieval call a model.*faithfulness"):
        run_eval(kb_store, None, _suite(faithfulness=True))
    with pytest.raises(NotFoundError, match="knowledge base 'nope' not found"):
        run_eval(kb_store, None, _suite(knowledge_base="nope"))
    create_kb(kb_store, KBConfig(name="empty", embedder="hand"))
    with pytest.raises(BadInputError, match="empty:v1 has no documents"):
        run_eval(kb_store, NoTarget(), _suite(knowledge_base="empty"))  # type: ignore[arg-type]
    assert kb_store.list("eval_run") == []
    # retriever settings are checked when the suite is read
    with pytest.raises(BadInputError, match="rrf_k cannot be set in `retrieve`"):
        _suite(retrieve={"rrf_k": 3})
    with pytest.raises(BadInputError, match="fusion"):
        _suite(retrieve={"fusion": "average"})


def test_the_version_resolved_before_the_run_is_the_one_searched(
    kb_store: Store, tmp_path: Path
) -> None:
    """A task reads the knowledge-base version the runner resolved (and lists as parent),
    even when a newer version appears in between."""
    t = task(k=[1, 2], faithfulness=False)
    (v2,) = t.inputs(kb_store)
    more = tmp_path / "more"
    more.mkdir()
    (more / "extra.txt").write_text("Annual bonus: paid in March.\n", encoding="utf-8")
    add_documents(kb_store, "tiny", [more])  # tiny:v3
    pinned = TaskEnv(seed=0, load=lambda r, s: [], splits=lambda r: [],
                     extra={"store": kb_store, "inputs": [v2]})  # fmt: skip
    res = t.run(NoTarget(), records(QUESTIONS), no_progress, pinned)
    assert (v2[0].ref, v2[1]) == ("tiny:v2", "knowledge_base")
    assert res.prompt["knowledge_base"] == "tiny:v2"
    assert t.run(NoTarget(), [], no_progress, env(kb_store)).prompt["knowledge_base"] == "tiny:v3"
