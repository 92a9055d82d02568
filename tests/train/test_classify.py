"""classify on a tiny decoder: a separable 3-class task, accuracy, loading back, bad input."""

from __future__ import annotations

import random
from typing import Any

import pytest

from luodi.data.datasets import save_dataset
from luodi.data.records import get_kind, make_record
from luodi.data.report import DatasetReport
from luodi.errors import BadInputError
from luodi.store import Store
from luodi.store.runs import Runs
from luodi.train import TrainConfig, load_model_version, merge, run_train
from luodi.train.classify import predict

KEYWORDS = {"finance": "invoice", "it": "password", "hr": "vacation"}
FILLER = "please note the team will check this item today before noon thanks a lot".split()


def sample(label: str, rng: random.Random) -> str:
    words = rng.sample(FILLER, 6)
    words.insert(rng.randrange(len(words) + 1), KEYWORDS[label])
    return " ".join(words)


def labeled_dataset(store: Store, rows: list[tuple[str, str]], name: str = "tickets") -> str:
    kind = get_kind("labeled")
    recs = [
        make_record(
            kind,
            source="/tickets.csv",
            source_sha256="3" * 64,
            location=f"row {i}",
            ordinal=0,
            text=t,
            label=lab,
        )
        for i, (t, lab) in enumerate(rows)
    ]
    report = DatasetReport(name=name, stage="ingest", record_kind="labeled")
    return save_dataset(store, report, [recs]).dataset


def rows(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    labels = sorted(KEYWORDS)
    return [(sample(labels[i % 3], rng), labels[i % 3]) for i in range(n)]


def cls_config(dataset: str, **kw: Any) -> TrainConfig:
    base = dict(
        stage="classify",
        base="tiny:test",
        dataset=dataset,
        val_ratio=0.25,
        batch_size=16,
        scheduler="constant",
        cutoff_len=32,
        tiny_vocab_size=300,
        seed=0,
        max_steps=40,
        eval_steps=40,
    )
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("method", ["full", "lora"])
def test_classifier_learns_keywords_and_loads_back(store: Store, method: str) -> None:
    ds = labeled_dataset(store, rows(96, seed=1))
    lr = 3e-3 if method == "full" else 1e-2
    res = run_train(store, cls_config(ds, method=method, learning_rate=lr))
    assert res.validation_examples == 24
    assert res.eval_metrics["eval_accuracy"] >= 0.9  # chance is 1/3
    info = store.resolve(res.model, "model")
    assert info.meta["stage"] == "classify" and info.meta["task"] == "classify"
    assert info.meta["labels"] == ["finance", "hr", "it"]
    assert info.meta["metrics"]["eval_accuracy"] == res.eval_metrics["eval_accuracy"]
    assert info.meta["metrics"]["eval_ppl"] is None

    model, tok = load_model_version(store, res.model)
    assert model.config.id2label == {0: "finance", 1: "hr", 2: "it"}
    fresh = rows(30, seed=99)  # texts never seen in training
    got = predict(model, tok, [t for t, _ in fresh], cutoff_len=32)
    hits = sum(g == lab for g, (_, lab) in zip(got, fresh, strict=True))
    assert hits >= 27, got
    if method == "lora":
        merged = merge(store, res.model)
        m2, tok2 = load_model_version(store, merged.ref)
        assert predict(m2, tok2, [t for t, _ in fresh], cutoff_len=32) == got


def test_classify_bad_input_before_training(store: Store) -> None:
    one_class = labeled_dataset(store, [("a b", "x"), ("c d", "x")], name="one")
    unlabeled = labeled_dataset(store, [("a b", "x"), ("c d", "")], name="unlabeled")
    from tests.train.test_dpo import preference_dataset

    prefs = preference_dataset(store)
    cases = [
        (cls_config(one_class, val_ratio=0.0), "at least two labels"),
        (cls_config(unlabeled), "have no label"),
        (cls_config(prefs), "holds preference records but stage 'classify' needs labeled"),
    ]
    for cfg, message in cases:
        with pytest.raises(BadInputError, match=message):
            run_train(store, cfg)
    assert store.list("model") == [] and Runs(store).list() == []
