"""Evaluation through the front door: ingest a C-Eval style CSV, train, eval run/show/compare,
and gate exit codes with the real `luodi` command."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tests.helpers import run_cli

ITEMS = [
    ("What colour is the sky?", ["green", "blue", "red", "black"], "B", "science"),
    ("How many legs does a spider have?", ["six", "four", "eight", "ten"], "C", "science"),
    ("Which metal is liquid?", ["mercury", "iron", "gold", "zinc"], "A", "science"),
    ("What gas do plants absorb?", ["oxygen", "helium", "neon", "carbon dioxide"], "D", "science"),
    ("中国的首都是哪里？", ["上海", "北京", "广州", "深圳"], "B", "geo"),
    ("长江流入哪个海？", ["东海", "南海", "渤海", "黄海"], "A", "geo"),
    ("Which is the largest ocean?", ["Atlantic", "Indian", "Arctic", "Pacific"], "D", "geo"),
    ("Which continent is Egypt in?", ["Asia", "Europe", "Africa", "Oceania"], "C", "geo"),
]


def _prompt(q: str, opts: list[str]) -> str:
    lines = "\n".join(f"{letter}. {o}" for letter, o in zip("ABCD", opts, strict=True))
    return f"{q}\n{lines}\nAnswer:"


def test_eval_run_show_compare_gate(tmp_path: Path) -> None:
    home = tmp_path / "home"
    mc = tmp_path / "mc.csv"
    with mc.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["question", "A", "B", "C", "D", "answer", "subject"])
        for q, o, a, s in ITEMS:
            w.writerow([q, *o, a, s])
        w.writerow(["No option D?", "x", "y", "z", "", "A", "geo"])  # line 10: skipped
        w.writerow(["Key E?", "1", "2", "3", "4", "E", "geo"])  # line 11: error
    run_cli(
        "data", "ingest", str(mc), "--kind", "labeled", "--name", "mc",
        "--column", "text=question", "--column", "label=answer", home=home,
    )  # fmt: skip
    train = tmp_path / "train.jsonl"
    train.write_text(
        "".join(
            json.dumps({"question": _prompt(q, o), "answer": a}, ensure_ascii=False) + "\n"
            for q, o, a, _ in ITEMS
        ),
        encoding="utf-8",
    )
    run_cli("data", "ingest", str(train), "--kind", "qa", "--name", "mc-train", home=home)
    common = ["--dataset", "mc-train", "--base", "tiny:test", "--name", "bot", "--method", "full"]
    common += ["--batch-size", "8", "--lr", "3e-3", "--set", "val_ratio=0"]
    common += ["--set", "tiny_vocab_size=400", "--set", "scheduler=constant"]
    run_cli("train", "sft", *common, "--max-steps", "1", home=home)
    run_cli("train", "sft", *common, "--max-steps", "40", home=home)
    run_cli("models", "promote", "bot:v1", "--to", "production", home=home)

    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "# luodi eval run bot --suite suite.yaml\nname: exam\ntasks:\n"
        "  - {task: choice, dataset: mc, batch_size: 4}\n",
        encoding="utf-8",
    )
    v1 = json.loads(
        run_cli("eval", "run", "bot:v1", "--suite", str(suite), "--json", home=home).stdout
    )
    p = run_cli("eval", "run", "bot@candidate", "--suite", str(suite), home=home)
    assert "stored as exam:v2" in p.stdout and "row" in p.stdout
    assert v1["run"] == "exam:v1" and v1["target"] == "bot:v1" and v1["status"] == "complete"

    shown = json.loads(run_cli("eval", "show", "exam", "--json", home=home).stdout)
    (task,) = shown["tasks"]
    assert shown["run"] == "exam:v2" and shown["target"] == "bot:v2"
    assert task["counts"] == {"records": 10, "scored": 8, "skipped": 1, "errors": 1}
    assert task["metrics"]["accuracy"] >= 0.9
    problems = {p["kind"]: p for p in task["problems"]}
    assert "missing option(s) D" in problems["skipped"]["reason"]
    assert "'E' is not among the choices" in problems["error"]["reason"]
    assert problems["error"]["location"] and problems["error"]["id"]
    text = run_cli("eval", "show", "exam:v2", home=home).stdout
    assert "missing option(s) D" in text and "8/10" in text

    cmp = json.loads(run_cli("eval", "compare", "exam:v1", "exam:v2", "--json", home=home).stdout)
    (row,) = [m for m in cmp["tasks"][0]["metrics"] if m["metric"] == "accuracy"]
    assert row["values"] == [v1["tasks"][0]["metrics"]["accuracy"], task["metrics"]["accuracy"]]
    assert row["diffs"][0]["diff"] > 0 and row["diffs"][0]["ci"] is not None
    assert "exam:v2" in run_cli("eval", "compare", "exam:v1", "exam:v2", home=home).stdout

    rules = tmp_path / "gate.yaml"
    rules.write_text(
        "thresholds:\n  choice.accuracy: {min: 0.9}\nno_regression:\n  - choice.accuracy\n",
        encoding="utf-8",
    )
    ok = run_cli("eval", "gate", "exam:v2", "--against", "production", "--rules", str(rules),
                 "--json", home=home)  # fmt: skip
    verdict = json.loads(ok.stdout)
    assert verdict["passed"] is True and verdict["against"] == "exam:v1"
    fail = run_cli(
        "eval", "gate", "exam:v1", "--against", "exam:v2", "--rules", str(rules),
        home=home, check=False,
    )  # fmt: skip
    assert fail.returncode == 1 and "FAIL" in fail.stdout

    bad = run_cli(
        "eval", "run", "bot", "--suite", str(tmp_path / "nope.yaml"), home=home, check=False
    )
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr
