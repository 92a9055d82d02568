"""Pretraining a tiny model from scratch, continued pretraining, validation sources, bf16."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from luodi.data.datasets import resolve, save_dataset
from luodi.data.records import get_kind, make_record
from luodi.data.report import DatasetReport
from luodi.store import Store
from luodi.store.runs import Runs
from luodi.train import TrainConfig, load_train_config, run_train
from luodi.train.compute import bf16_supported
from luodi.train.data import select_records
from luodi.train.pretrain import pack_texts

SUBJECTS = ["the clerk", "our manager", "the new engineer", "财务部", "人事部"]
VERBS = ["approves", "reviews", "files", "审批", "归档"]
OBJECTS = ["the travel claim", "each invoice", "the leave request", "报销单", "合同"]


def sentences(n: int, seed: int) -> list[str]:
    """Short templated sentences: learnable structure, in English and Chinese."""
    rng = random.Random(seed)
    return [
        " ".join([rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS)])
        + f" on day {rng.randint(1, 9)}."
        for _ in range(n)
    ]


def corpus(store: Store, name: str, splits: dict[str, int] | None = None) -> str:
    """A text dataset; `splits` gives how many records get each split value."""
    kind = get_kind("text")
    plan = [s for s, k in (splits or {"": 40}).items() for _ in range(k)]
    recs = []
    for i, split in enumerate(plan):
        rec = make_record(
            kind,
            source="/corpus.txt",
            source_sha256="1" * 64,
            location=f"para {i}",
            ordinal=0,
            text=" ".join(sentences(6, seed=i)),
        )
        rec["split"] = split or None
        recs.append(rec)
    report = DatasetReport(name=name, stage="ingest", record_kind="text")
    return save_dataset(store, report, [recs]).dataset


def pre_cfg(dataset: str, **kw: Any) -> TrainConfig:
    base = dict(
        stage="pretrain",
        base="tiny:test",
        dataset=dataset,
        method="full",
        cutoff_len=64,
        batch_size=8,
        learning_rate=3e-3,
        scheduler="cosine",
        warmup_ratio=0.1,
        tiny_vocab_size=500,
        seed=0,
    )
    return TrainConfig(**{**base, **kw})


def test_pretrain_perplexity_falls_on_the_validation_split(store: Store) -> None:
    ds = corpus(store, "corpus", {"train": 48, "validation": 8, "test": 8})
    res = run_train(store, pre_cfg(ds, max_steps=60, eval_steps=30))
    metrics = Runs(store).metrics(res.run_id)
    evals = metrics["eval_ppl"]
    assert [s for s, _ in evals] == [0, 30, 60]  # before training, every 30 steps, at the end
    assert evals[-1][1] < 0.5 * evals[0][1]
    assert res.eval_loss == pytest.approx(math.log(evals[-1][1]), rel=1e-6)
    info = store.resolve(res.model, "model")
    assert info.meta["data"]["train"] == "corpus:v1:train"
    assert info.meta["data"]["validation"] == "corpus:v1:validation"
    assert info.meta["data"]["train_records"] == 48  # the test split is never trained on
    assert info.meta["stage"] == "pretrain" and info.meta["adapter"] is False

    # cpt continues from those weights, given as a path to the version's model/ folder.
    base_path = str(info.path / "model")
    cpt = run_train(store, pre_cfg(ds, stage="cpt", base=base_path, max_steps=3, name="corpus-cpt"))
    first = Runs(store).metrics(cpt.run_id)["eval_ppl"][0][1]
    assert first == pytest.approx(evals[-1][1], rel=1e-4)  # it starts where pretrain ended
    parents = {p.role: p for p in store.resolve(cpt.model, "model").parents}
    assert parents["base"].kind == "base_model" and parents["train"].ref == "corpus:v1"


def test_validation_sources_and_deterministic_ratio(store: Store) -> None:
    ds = corpus(store, "plain", {"": 20})
    info = resolve(store, ds)
    a = select_records(pre_cfg(ds, val_ratio=0.25), info, None)
    b = select_records(pre_cfg(ds, val_ratio=0.25), info, None)
    c = select_records(pre_cfg(ds, val_ratio=0.25, seed=1), info, None)
    assert len(a.train) == 15 and len(a.validation) == 5
    assert [r["id"] for r in a.validation] == [r["id"] for r in b.validation]
    assert {r["id"] for r in a.validation} != {r["id"] for r in c.validation}
    assert not {r["id"] for r in a.train} & {r["id"] for r in a.validation}
    other = corpus(store, "heldout", {"": 4})
    d = select_records(pre_cfg(ds), info, resolve(store, other))
    assert len(d.train) == 20 and len(d.validation) == 4
    assert d.source["validation"] == "heldout:v1"
    e = select_records(pre_cfg(ds, val_ratio=0.0, max_samples=7), info, None)
    assert len(e.train) == 7 and e.validation == []


def test_packing_joins_documents_with_eos() -> None:
    from luodi.models.tiny import train_tokenizer

    tok = train_tokenizer(["ab cd ef"] * 3, vocab_size=300)
    blocks = pack_texts(["ab cd", "", "ef ab cd ef ab"], tok, block=4)
    stream = tok("ab cd", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    stream += tok("ef ab cd ef ab", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert [b["input_ids"] for b in blocks] == [
        stream[i : i + 4] for i in range(0, len(stream) // 4 * 4, 4)
    ]
    assert all(b["labels"] == b["input_ids"] for b in blocks)


def test_bf16_autocast_trains(store: Store) -> None:
    if not bf16_supported():
        pytest.skip("no native bf16 on this machine")
    ds = corpus(store, "corpus")
    res = run_train(store, pre_cfg(ds, compute="bf16", max_steps=4, val_ratio=0.0))
    losses = [v for _, v in Runs(store).metrics(res.run_id)["loss"]]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    assert store.resolve(res.model, "model").meta["config"]["compute"] == "bf16"


def test_config_from_yaml_with_overrides(tmp_path: Any) -> None:
    from luodi.errors import BadInputError

    path = tmp_path / "train.yaml"
    path.write_text(
        "# luodi train sft --config train.yaml\nstage: sft\ndataset: faq\nlora_r: 4\n",
        encoding="utf-8",
    )
    cfg = load_train_config(path, {"lora_r": 16, "learning_rate": None})
    assert cfg.lora_r == 16 and cfg.learning_rate == 2e-4 and cfg.model_name == "faq-sft"
    path.write_text("stage: sft\ndataset: faq\nlora_rank: 4\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="lora_rank"):
        load_train_config(path)
    with pytest.raises(BadInputError, match="compute"):
        load_train_config(None, {"stage": "sft", "dataset": "faq", "compute": "int8"})
