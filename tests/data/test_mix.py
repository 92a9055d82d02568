"""`luodi data mix`: sources filtered by split, weighted, re-split, deduplicated, with lineage."""

from __future__ import annotations

import json
from pathlib import Path

from luodi.config import Settings
from luodi.data.datasets import load_records, resolve
from luodi.store import Store
from tests.helpers import run_cli, save_qa


def _q(rec: dict) -> str:
    return rec["messages"][0]["content"]


def test_mix_through_the_cli(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = Store(Settings(home=home))
    save_qa(store, [(f"q{i}", f"a{i}") for i in range(10)], name="faq")
    run_cli("data", "split", "faq:v1", "--ratios", "0.8,0.1,0.1", home=home)
    # feedback repeats one training question (kept once) and adds two new ones
    save_qa(store, [("q0", "a0"), ("new1", "fixed1"), ("new2", "fixed2")], name="fb")
    res = json.loads(
        run_cli(
            "data",
            "mix",
            "--from",
            "faq:v2#train",
            "--from",
            "fb*2",
            "--into",
            "train",
            "--name",
            "faq-plus",
            "--json",
            home=home,
        ).stdout
    )
    assert res["dataset"] == "faq-plus:v1"
    info = resolve(store, "faq-plus:v1")
    recs = load_records(info)
    train_q = [_q(r) for r in load_records(resolve(store, "faq:v2"), "train")]
    assert len(train_q) == 8
    got = sorted(_q(r) for r in recs)
    # 8 training records, q0 once more only if it was not in train, two new ones twice each
    expected = sorted(
        train_q + ["new1", "new1", "new2", "new2"] + ([] if "q0" in train_q else ["q0"] * 2)
    )
    assert got == expected
    assert {r["split"] for r in recs} == {"train"}
    assert sorted(p.ref for p in info.parents) == ["faq:v2", "fb:v1"]
    notes = info.meta.get("notes") or json.loads((info.path / "report.json").read_text())["notes"]
    assert notes["sources"]["fb:v1"]["repeat"] == 2


def test_mix_bad_input(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = Store(Settings(home=home))
    save_qa(store, [("q", "a")], name="faq")
    bad = run_cli("data", "mix", "--from", "faq#nosuch", "--name", "x", home=home, check=False)
    assert bad.returncode == 2 and "no split 'nosuch'" in bad.stderr
    bad = run_cli("data", "mix", "--from", "faq*0", "--name", "x", home=home, check=False)
    assert bad.returncode == 2 and "faq*0" in bad.stderr
    bad = run_cli("data", "mix", "--from", "nope", "--name", "x", home=home, check=False)
    assert bad.returncode == 2 and "nope" in bad.stderr
    assert [d.name for d in store.list("dataset")] == ["faq"]
