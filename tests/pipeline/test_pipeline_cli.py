"""Pipelines through the front door: `luodi pipeline run/show/list` on a small DAG (ingest →
clean → train → eval → gate → register → canary deploy, and a knowledge base beside it),
cached on unchanged inputs, re-run where an input changed, resumed after a failed gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from luodi.config import Settings
from luodi.store import Store
from tests.helpers import run_cli

QA = [
    ("保修期多久？", "整机保修两年。"),
    ("服务热线是多少？", "400-861-9527。"),
    ("How do I reset alarm AL-101?", "Press RESET twice."),
    ("主轴最高转速是多少？", "12000 转每分钟。"),
    ("刀库可以放几把刀？", "24 把刀。"),
    ("需要什么电源？", "三相 380 V。"),
]

PIPELINE = """\
# luodi pipeline run pipeline.yaml
name: faq-bot
stages:
  - id: canary                     # listed first on purpose: order comes from dependencies
    uses: deploy
    needs: [register]
    with:
      name: bot-api
      knowledge_bases: [manuals]
      routes:
        - {model: "tiny:test", weight: 90}
        - {model: "${{ steps.train.output }}", weight: 10}
  - id: faq
    uses: ingest
    with: {paths: [data/faq.jsonl], kind: qa, name: faq}
  - id: clean
    uses: clean
    with: {dataset: "${{ steps.faq.output }}"}
  - id: docs
    uses: kb
    with: {name: manuals, embedder: minilm, paths: [docs]}
  - id: train
    uses: train
    with:
      stage: sft
      dataset: "${{ steps.clean.output }}"
      base: "tiny:test"
      name: bot
      method: full
      max_steps: 2
      batch_size: 4
      val_ratio: 0
      tiny_vocab_size: 400
  - id: eval
    uses: eval
    with:
      target: "${{ steps.train.output }}"
      suite:
        name: faq-eval
        tasks: [{task: generate, dataset: "${{ steps.clean.output }}", max_new_tokens: 4, limit: 3}]
  - id: gate
    uses: gate
    with:
      candidate: "${{ steps.eval.output }}"
      rules: {thresholds: {generate.token_f1: {min: MIN_F1}}}
  - id: register
    uses: register
    needs: [gate, docs]
    with: {model: "${{ steps.train.output }}", stage: staging}
"""


def _write_faq(folder: Path, pairs: list[tuple[str, str]]) -> None:
    lines = [json.dumps({"question": q, "answer": a}, ensure_ascii=False) for q, a in pairs]
    (folder / "data").mkdir(exist_ok=True)
    (folder / "data" / "faq.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _project(tmp: Path, min_f1: float = 0.0) -> Path:
    _write_faq(tmp, QA)
    docs = tmp / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "warranty.md").write_text(
        "# Warranty\n\nThe S200 sensor has a two-year warranty; water damage is not covered.\n",
        encoding="utf-8",
    )
    (docs / "alarms.md").write_text(
        "# Alarms\n\nAlarm AL-101 means the spindle overheated. Press RESET twice.\n",
        encoding="utf-8",
    )
    return _pipeline(tmp, min_f1)


def _pipeline(tmp: Path, min_f1: float) -> Path:
    path = tmp / "pipeline.yaml"
    path.write_text(PIPELINE.replace("MIN_F1", str(min_f1)), encoding="utf-8")
    return path


def _run(path: Path, home: Path, *extra: str, code: int = 0) -> dict[str, Any]:
    # run from another folder: relative paths must start from the pipeline file's folder
    p = run_cli("pipeline", "run", str(path), "--json", *extra, home=home, check=False)
    assert p.returncode == code, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return json.loads(p.stdout)


def _status(res: dict[str, Any]) -> dict[str, str]:
    return {s["id"]: s["status"] for s in res["stages"]}


def _versions(store: Store) -> set[tuple[str, str]]:
    return {(a.kind, a.ref) for a in store.list() if a.kind != "pipeline_run"}


@pytest.mark.slow
def test_run_cache_rerun_changed_input_and_resume_after_failed_gate(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proj = tmp_path / "proj"
    proj.mkdir()
    path = _project(proj)
    ids = ["faq", "clean", "docs", "train", "eval", "gate", "register", "canary"]

    # 1. first run: every stage runs, dependencies first
    first = _run(path, home)
    assert first["status"] == "succeeded" and first["resumed_from"] is None
    assert [s["id"] for s in first["stages"]] == ids
    assert set(_status(first).values()) == {"ran"}
    out = {s["id"]: s["output"] for s in first["stages"]}
    assert out["faq"]["ref"] == "faq:v1" and out["clean"]["ref"] == "faq:v2"
    assert out["train"]["ref"] == "bot:v1" and out["register"]["ref"] == "bot:v1"
    assert out["eval"]["kind"] == "eval_run" and out["gate"]["kind"] == "eval_gate"
    assert out["canary"]["detail"]["routes"] == {"tiny-test:v1": 90.0, "bot:v1": 10.0}
    assert out["docs"]["kind"] == "knowledge_base" and out["docs"]["detail"]["documents"] == 2

    store = Store(Settings(home=home))
    try:
        # the record: a pipeline_run whose parents are every artifact made, role = stage id
        record = store.resolve(first["record"], "pipeline_run")
        roles = {(p.kind, p.ref): p.role for p in record.parents}
        for sid in ids:
            if sid != "register":  # register acts on train's model, recorded under train
                assert roles[(out[sid]["kind"], out[sid]["ref"])] == sid
        assert roles[("base_model", "tiny-test:v1")] in ("train", "canary")
        saved = json.loads((record.path / "run.json").read_text(encoding="utf-8"))
        assert _status(saved) == _status(first)
        # the model's own lineage still runs back to the file the pipeline ingested
        tree = store.lineage("bot:v1", "model")
        train_parent = next(p for p in tree.parents if p.role == "train")
        assert train_parent.ref == "faq:v2"
        assert train_parent.parents[0].sources[0]["path"].endswith("faq.jsonl")
        from luodi.registry.stages import stage_of

        assert stage_of(store, "bot:v1") == "staging"
        before = _versions(store)

        # 2. nothing changed: every stage cached, no new version of anything
        second = _run(path, home)
        assert set(_status(second).values()) == {"cached"}, second["stages"]
        assert all(s["cached_from"] == first["run_id"] for s in second["stages"])
        assert _versions(store) == before

        # 3. a changed FAQ file: its branch runs again, the knowledge base stays cached
        _write_faq(proj, [*QA, ("交货期多久？", "四周。")])
        third = _run(path, home)
        st = _status(third)
        assert st.pop("docs") == "cached"
        assert set(st.values()) == {"ran"}, st
        o3 = {s["id"]: s["output"]["ref"] for s in third["stages"]}
        assert (o3["faq"], o3["clean"], o3["train"]) == ("faq:v3", "faq:v4", "bot:v2")
        assert o3["canary"] == "bot-api:v2"

        # 4. new data, and a gate that cannot pass: the gate fails, its dependants are
        # skipped, the run exits 1 and the new model stays a candidate
        _write_faq(proj, [*QA, ("交货期多久？", "四周。"), ("能开发票吗？", "可以。")])
        _pipeline(proj, 2.0)
        p = run_cli("pipeline", "run", str(path), home=home, check=False)
        assert p.returncode == 1, p.stdout + p.stderr
        assert "stage gate (gate) failed" in p.stderr and "below min 2" in p.stderr
        failed = json.loads(run_cli("pipeline", "show", "faq-bot", "--json", home=home).stdout)
        assert failed["status"] == "failed"
        assert _status(failed) == {
            **dict.fromkeys(["faq", "clean", "train", "eval"], "ran"),
            "docs": "cached",
            "gate": "failed",
            "register": "skipped",
            "canary": "skipped",
        }
        assert failed["stages"][5]["output"]["kind"] == "eval_gate"  # the verdict is kept
        assert failed["stages"][3]["output"]["ref"] == "bot:v3"
        assert stage_of(store, "bot:v3") == "candidate"

        # 5. fixed and resumed: only the failed stage and its dependants run
        _pipeline(proj, 0.0)
        resumed = _run(path, home, "--resume", failed["run_id"][:8])
        assert resumed["resumed_from"] == failed["run_id"]
        assert _status(resumed) == {
            **dict.fromkeys(["faq", "clean", "docs", "train", "eval"], "cached"),
            **dict.fromkeys(["gate", "register", "canary"], "ran"),
        }
        assert stage_of(store, "bot:v3") == "staging"
    finally:
        store.close()

    listing = json.loads(run_cli("pipeline", "list", "--json", home=home).stdout)
    assert [r["status"] for r in listing] == ["succeeded"] * 3 + ["failed", "succeeded"]
    assert listing[-1]["counts"] == {"cached": 5, "ran": 3}
    assert listing[-1]["resumed_from"] == failed["run_id"]
    shown = run_cli("pipeline", "show", resumed["run_id"][:8], home=home).stdout
    assert "gate (gate)" in shown and "resumed from run" in shown


def test_bad_pipelines_exit_2_naming_the_problem_and_register_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proj = tmp_path / "proj"
    proj.mkdir()
    good = _project(proj).read_text(encoding="utf-8")

    def bad(text: str) -> str:
        path = proj / "bad.yaml"
        path.write_text(text, encoding="utf-8")
        p = run_cli("pipeline", "run", str(path), home=home, check=False)
        assert p.returncode == 2, p.stdout + p.stderr
        assert "Traceback" not in p.stderr
        return p.stderr

    cycle = good.replace("needs: [gate, docs]", "needs: [gate, docs, canary]")
    err = " ".join(bad(cycle).split())
    assert "cycle" in err and "canary -> register -> canary" in err
    from luodi.pipeline import list_pipeline_runs, load_pipeline

    def problem(text: str) -> str:
        path = proj / "bad.yaml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(Exception) as info:
            load_pipeline(path)
        assert type(info.value).__name__ == "BadInputError"
        return str(info.value)

    msg = problem(good.replace("      max_steps: 2\n", "      max_steps: 2\n      colour: red\n"))
    assert "stage 'train' (train)" in msg and "with.colour" in msg
    assert "unknown stage kind uses: 'deploi'" in problem(
        good.replace("uses: deploy", "uses: deploi")
    )
    msg = problem(good.replace("steps.clean.output", "steps.cleaned.output", 1))
    assert "stage 'train'" in msg and "with.dataset" in msg and "unknown stage 'cleaned'" in msg
    msg = problem(good.replace("${{ steps.faq.output }}", "${{ steps.faq.outputs }}"))
    assert "stage 'clean'" in msg and "unknown expression" in msg
    msg = problem(good.replace("max_steps: 2", "max_steps: -1"))
    assert "with.max_steps" in msg
    msg = problem(good.replace("  - id: docs\n", "  - id: faq\n"))
    assert "two stages have the id 'faq'" in msg
    msg = problem(good.replace("min: 0.0", "mn: 0.0"))
    assert "stage 'gate' (gate)" in msg and "mn" in msg
    msg = problem(good.replace("name: faq-bot", "name: faq bot"))
    assert "name" in msg

    store = Store(Settings(home=home))
    try:
        assert store.list() == [] and list_pipeline_runs(store) == []
    finally:
        store.close()


def test_example_pipeline_is_valid_and_ordered() -> None:
    from luodi.pipeline import load_pipeline
    from tests.conftest import EXAMPLES

    path = EXAMPLES / "pipelines" / "xinghe.yaml"
    assert path.read_text(encoding="utf-8").startswith("# luodi pipeline run ")
    pipe = load_pipeline(path)
    order = [s.id for s in pipe.order]
    assert order.index("split") < order.index("train") < order.index("eval") < order.index("gate")
    assert order.index("gate") < order.index("register") < order.index("canary")
    assert set(pipe.deps["gate"]) == {"eval", "eval_base"}
    assert set(pipe.deps["eval"]) == {"train", "heldout"}
