"""The whole loop on tiny models through the real `luodi demo` command: data → knowledge base →
train v1 → production → gateway answers with citations → feedback → SFT/DPO datasets → v2 →
gate → canary; every artifact checked for the lineage that ties it to the others."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from luodi.config import Settings
from luodi.data.datasets import load_records, resolve
from luodi.serve import deployments as D
from luodi.store import Store
from tests.helpers import run_cli

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Store]:
    home = tmp_path_factory.mktemp("loop") / "home"
    args = ["--base", "tiny:test", "--embedder", "minilm", "--steps", "4", "--users", "4"]
    res = json.loads(run_cli("demo", *args, "--json", home=home, timeout=900).stdout)
    return res, Store(Settings(home=home))


def _parents(store: Store, ref: str, kind: str) -> dict[str, str]:
    return {p.role: p.ref for p in store.resolve(ref, kind).parents}


def test_versions_and_their_lineage(loop) -> None:
    res, store = loop
    v1, v2 = (v["model"] for v in res["versions"])  # a tiny base is not scored before training
    faq = next(s["dataset"] for s in res["steps"] if s["record_kind"] == "qa")
    assert _parents(store, v1, "model")["train"] == faq
    mix = res["feedback"]["training_mix"]
    assert _parents(store, v2, "model")["train"] == mix
    mix_parents = {p.ref for p in store.resolve(mix, "dataset").parents}
    assert mix_parents == {faq, res["feedback"]["sft_dataset"]}
    # the feedback dataset names the version whose answers were corrected
    sft = store.resolve(res["feedback"]["sft_dataset"], "dataset")
    assert v1 in {p.ref for p in sft.parents}
    # each eval run has the version it scored as a parent
    for v in res["versions"]:
        assert _parents(store, v["eval_run"], "eval_run")["target"] == v["model"]


def test_feedback_dataset_holds_the_corrections(loop) -> None:
    res, store = loop
    corrected = [a for a in res["answers"] if a["corrected"]]
    assert corrected, "the simulated users corrected nothing"
    truth = {
        q["question"]: q["answer"]
        for q in map(json.loads, (EXAMPLES / "rag" / "xinghe_questions.jsonl").open())
    }
    records = load_records(resolve(store, res["feedback"]["sft_dataset"]))
    pairs = {r["messages"][0]["content"]: r["messages"][-1]["content"] for r in records}
    for a in corrected:
        assert pairs[a["question"]] == truth[a["question"]]
    assert all(r["messages"][-1]["role"] == "assistant" for r in records)


def test_answers_cite_the_knowledge_base(loop) -> None:
    res, _ = loop
    first = res["answers"][0]
    assert first["served_by"] == res["versions"][0]["model"]
    assert any(a["citations"] for a in res["answers"])


def test_canary_routes_v2_at_twenty_percent(loop) -> None:
    res, store = loop
    v1, v2 = (v["model"] for v in res["versions"])
    if res["canary"] is None:  # v2 failed its gate: it must say so and stay a candidate
        assert res["versions"][1]["gate"].startswith("failed")
        return
    spec = D.current(store, "xinghe-assistant").spec
    assert spec.knowledge_bases == [res["knowledge_base"]]
    assert {r.served: r.weight for r in spec.routes} == {v1: 80.0, v2: 20.0}
    assert res["versions"][1]["stage"] == "staging"
