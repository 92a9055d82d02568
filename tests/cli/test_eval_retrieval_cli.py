"""`luodi eval run` without a target: a suite of retrieval-only tasks runs with no model at
all (the home holds no model), the knowledge-base version it searched is a parent of the run
(`eval show`, `eval lineage`), compare and gate (against a named run) work on such runs, and
`eval gate` says why it cannot use production. A suite that needs a model fails with exit 2
and stores nothing (a missing knowledge base: tests/eval/test_retrieval.py).

The knowledge base uses the real e5 embedder (the CLI subprocess must open it); the lexical
metrics are checked against the hand computations of tests/eval/test_retrieval.py (BM25 does
not depend on the embedder), the dense ones against the task run in this process.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest

from luodi.config import Settings
from luodi.data.datasets import save_dataset
from luodi.data.report import DatasetReport
from luodi.eval.compare import compare_runs
from luodi.eval.gate import gate, load_gate_rules
from luodi.progress import no_progress
from luodi.rag.kb import KBConfig, add_documents, create_kb
from luodi.store import Store
from tests.eval.test_retrieval import DOCS, QUESTIONS, NoTarget, env, records, task
from tests.helpers import run_cli

SUITE = """\
# luodi eval run --suite {file}
name: rag
tasks:
  - {{task: retrieval, dataset: q, knowledge_base: tiny, k: [1, 2], modes: [lexical, dense],
     faithfulness: {faithfulness}}}
"""
# lexical first ranks of the four QUESTIONS: [1], [1], [None, 1], [None] (hand-checked there)
LEXICAL = {"hit@1": 0.75, "hit@2": 0.75, "recall@1": 0.625, "recall@2": 0.625, "mrr": 0.75}


def _suite(path: Path, faithfulness: bool = False) -> str:
    path.write_text(
        SUITE.format(file=path.name, faithfulness=str(faithfulness).lower()), encoding="utf-8"
    )
    return str(path)


def _home(tmp_path: Path) -> tuple[Path, Path]:
    """A home with knowledge base tiny:v2 (e5, the three DOCS) and qa dataset q:v1; no model."""
    home, docs = tmp_path / "home", tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text + "\n", encoding="utf-8")
    store = Store(Settings(home=home))
    try:
        create_kb(store, KBConfig(name="tiny", embedder="e5"))
        add_documents(store, "tiny", [docs])
        report = DatasetReport(name="q", stage="ingest", record_kind="qa")
        save_dataset(store, report, [records(QUESTIONS)])
        assert store.list("model") == [] and store.list("base_model") == []
    finally:
        store.close()
    return home, docs


def _json(proc: Any) -> Any:
    return json.loads(proc.stdout)


@pytest.mark.slow  # six `luodi` processes (~4 s each on a quiet machine)
def test_retrieval_only_runs_need_no_target_and_record_the_kb(tmp_path: Path) -> None:
    home, docs = _home(tmp_path)
    suite = _suite(tmp_path / "suite.yaml")

    res = _json(run_cli("eval", "run", "--suite", suite, "--json", home=home))
    assert (res["run"], res["target"], res["status"]) == ("rag:v1", "none", "complete")
    metrics = res["tasks"][0]["metrics"]
    assert {n: metrics[f"lexical.{n}"] for n in LEXICAL} == LEXICAL
    store = Store(Settings(home=home))
    try:
        mine = task(k=[1, 2], modes=["lexical", "dense"], faithfulness=False).run(
            NoTarget(), records(QUESTIONS), no_progress, env(store)
        )
    finally:
        store.close()
    for name, value in mine.metrics.items():
        assert math.isclose(metrics[name], value), name
    assert {(p["kind"], p["ref"], p["role"]) for p in res["parents"]} == {
        ("dataset", "q:v1", "data"),
        ("knowledge_base", "tiny:v2", "knowledge_base"),
    }

    shown = run_cli("eval", "show", "rag", home=home).stdout
    assert "no target (retrieval only)" in shown
    assert "tiny:v2 (knowledge_base)" in shown and "q:v1 (data)" in shown
    # lineage: run -> knowledge base -> the documents' files, by sha256
    tree = _json(run_cli("eval", "lineage", "rag:v1", "--json", home=home))
    (kb,) = [p for p in tree["parents"] if p["kind"] == "knowledge_base"]
    assert (kb["ref"], kb["role"]) == ("tiny:v2", "knowledge_base")
    assert {s["sha256"] for s in kb["sources"]} == {
        hashlib.sha256((docs / n).read_bytes()).hexdigest() for n in DOCS
    }

    # a second run after the knowledge base changed reads (and lists) the new version
    more = tmp_path / "more"
    more.mkdir()
    (more / "bonus.txt").write_text("Bonus: paid every March.\n", encoding="utf-8")
    store = Store(Settings(home=home))
    try:
        add_documents(store, "tiny", [more])
    finally:
        store.close()
    res2 = _json(run_cli("eval", "run", "--suite", suite, "--json", home=home))
    assert ("tiny:v3", "knowledge_base") in {(p["ref"], p["role"]) for p in res2["parents"]}

    # gate: no production model to gate a targetless run against (exit 2, saying what to do)
    rules = tmp_path / "gate.yaml"
    rules.write_text(
        "thresholds:\n  retrieval.lexical.hit@1: {min: 0.5}\nno_regression:\n"
        "  - retrieval.lexical.mrr\n",
        encoding="utf-8",
    )
    proc = run_cli("eval", "gate", "rag:v2", "--rules", str(rules), home=home, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "without a target" in proc.stderr and "--against" in proc.stderr

    # a suite that needs a model, run without one: exit 2 naming the task, nothing stored
    answers = _suite(tmp_path / "answers.yaml", faithfulness=True)
    proc = run_cli("eval", "run", "--suite", answers, home=home, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "retrieval call a model" in proc.stderr and "faithfulness: false" in proc.stderr

    store = Store(Settings(home=home))
    try:
        assert [r.ref for r in store.list("eval_run")] == ["rag:v1", "rag:v2"]
        # compare and gate against a named run work on targetless runs (the same core
        # functions `luodi eval compare|gate` call)
        cmp = compare_runs(store, ["rag:v1", "rag:v2"])
        assert [(r.ref, r.target) for r in cmp.runs] == [("rag:v1", None), ("rag:v2", None)]
        verdict = gate(store, "rag:v2", "rag:v1", load_gate_rules(rules))
        assert verdict.passed and verdict.against == "rag:v1"
    finally:
        store.close()
