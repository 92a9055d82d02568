"""A classifier version (luodi's classify stage on a tiny labeled CSV) evaluated with the
`classify` task through `luodi eval run`: its metrics equal scikit-learn's on the stored
predictions."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from tests.helpers import run_cli

KEYWORDS = {"finance": "invoice", "it": "password", "hr": "vacation"}
FILLER = "please note the team will check this item today before noon thanks a lot".split()


def _sample(words: list[str], rng: random.Random) -> str:
    out = rng.sample(FILLER, 5)
    for w in words:
        out.insert(rng.randrange(len(out) + 1), w)
    return " ".join(out)


def _write(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["ticket", "team"])
        w.writerows(rows)


def test_classifier_version_scored_like_scikit_learn(tmp_path: Path) -> None:
    home = tmp_path / "home"
    rng = random.Random(0)
    labels = sorted(KEYWORDS)
    train = [(_sample([KEYWORDS[labels[i % 3]]], rng), labels[i % 3]) for i in range(60)]
    # The test set mixes clear texts, texts with two keywords (the label is the first's) and
    # a label the model never saw, so predictions are neither all right nor all wrong.
    test = [(_sample([KEYWORDS[lab]], rng), lab) for lab in labels * 3]
    test += [(_sample([KEYWORDS[a], KEYWORDS[b]], rng), a) for a, b in [("hr", "it")] * 3]
    test += [(_sample(["contract"], rng), "legal") for _ in range(3)]
    _write(tmp_path / "train.csv", train)
    _write(tmp_path / "test.csv", test)
    for name, file in (("tickets", "train.csv"), ("tickets-test", "test.csv")):
        run_cli(
            "data", "ingest", str(tmp_path / file), "--kind", "labeled", "--name", name,
            "--column", "text=ticket", "--column", "label=team", home=home,
        )  # fmt: skip
    run_cli(
        "train", "classify", "--dataset", "tickets", "--base", "tiny:test", "--name", "router",
        "--method", "full", "--batch-size", "16", "--lr", "3e-3", "--max-steps", "30",
        "--cutoff-len", "32", "--set", "val_ratio=0", "--set", "tiny_vocab_size=300",
        "--set", "scheduler=constant", home=home,
    )  # fmt: skip
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "# luodi eval run router --suite suite.yaml\n"
        "name: routing\n"
        "tasks:\n"
        "  - {task: classify, dataset: tickets-test, batch_size: 5}\n",
        encoding="utf-8",
    )
    out = json.loads(
        run_cli("eval", "run", "router", "--suite", str(suite), "--json", home=home).stdout
    )
    assert out["status"] == "complete" and out["target"] == "router:v1"
    (task,) = out["tasks"]
    assert task["counts"]["scored"] == len(test)

    body = json.loads((Path(out["path"]) / "results.json").read_text(encoding="utf-8"))
    run = json.loads((Path(out["path"]) / "run.json").read_text(encoding="utf-8"))
    assert run["target"]["kind"] == "classifier" and run["target"]["labels"] == labels
    t = body["tasks"]["classify"]
    assert t["prompt"]["method"] == "classifier"
    y_true = [it["reference"] for it in t["items"]]
    y_pred = [it["prediction"] for it in t["items"]]
    assert y_true == [lab for _, lab in test]
    assert set(y_pred) <= set(labels)  # a classifier only predicts what it was trained on
    assert 0 < accuracy_score(y_true, y_pred) < 1
    m = task["metrics"]
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
    assert (m["macro_precision"], m["macro_recall"], m["macro_f1"]) == pytest.approx((p, r, f))
    report = t["details"]["report"]
    order = sorted(set(y_true) | set(y_pred))
    assert report["labels"] == order
    assert report["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=order).tolist()
    per_p, per_r, per_f, support = precision_recall_fscore_support(
        y_true, y_pred, labels=order, zero_division=0
    )
    for i, lab in enumerate(order):
        c = report["per_class"][lab]
        assert (c["precision"], c["recall"], c["f1"]) == pytest.approx(
            (per_p[i], per_r[i], per_f[i])
        )
        assert c["support"] == support[i]
