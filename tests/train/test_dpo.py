"""dpo on a tiny model: the chosen-vs-rejected log-probability margin rises (full and lora)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from luodi.data.datasets import load_records, save_dataset
from luodi.data.records import get_kind, make_record
from luodi.data.report import DatasetReport
from luodi.errors import BadInputError, StageFailedError
from luodi.models.base import resolve_base
from luodi.models.loading import load_base
from luodi.store import Store
from luodi.store.runs import Runs
from luodi.train import TrainConfig, load_model_version, run_train

PAIRS = [
    ("What are the office hours?", "Monday to Friday, 9am to 6pm.", "Whenever you like."),
    ("How do I reset my password?", "Open Settings, then Security.", "You cannot reset it."),
    ("Who approves travel expenses?", "Your department manager.", "Nobody approves them."),
    ("Where is the VPN guide?", "On the intranet under IT.", "There is no VPN guide."),
    ("年假有多少天？", "每年十五天年假。", "没有年假。"),
    ("报销需要什么材料？", "发票原件和审批单。", "什么都不需要。"),
]


def preference_dataset(store: Store, pairs: list[tuple[str, str, str]] = PAIRS) -> str:
    kind = get_kind("preference")
    recs = [
        make_record(
            kind,
            source="/prefs.jsonl",
            source_sha256="2" * 64,
            location=f"line {i}",
            ordinal=0,
            prompt=p,
            chosen=c,
            rejected=r,
        )
        for i, (p, c, r) in enumerate(pairs)
    ]
    report = DatasetReport(name="prefs", stage="ingest", record_kind="preference")
    return save_dataset(store, report, [recs]).dataset


def dpo_config(dataset: str, **kw: Any) -> TrainConfig:
    base = dict(
        stage="dpo",
        base="tiny:test",
        dataset=dataset,
        val_ratio=0.0,
        batch_size=6,
        scheduler="constant",
        cutoff_len=96,
        tiny_vocab_size=400,
        seed=0,
        max_steps=25,
        dpo_beta=0.1,
    )
    return TrainConfig(**{**base, **kw})


def answer_logprob(model: Any, tok: Any, prompt: str, answer: str) -> float:
    """Sum of the log-probabilities of the answer's tokens after the chat-templated prompt."""
    user = [{"role": "user", "content": prompt}]
    head = tok.apply_chat_template(user, add_generation_prompt=True, return_dict=False)
    full = tok.apply_chat_template(
        [*user, {"role": "assistant", "content": answer}], return_dict=False
    )
    assert full[: len(head)] == head
    ids = torch.tensor([full])
    with torch.no_grad():
        logps = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    return float(sum(logps[t - 1, full[t]] for t in range(len(head), len(full))))


def mean_margin(model: Any, tok: Any) -> float:
    margins = [
        answer_logprob(model, tok, p, c) - answer_logprob(model, tok, p, r) for p, c, r in PAIRS
    ]
    return sum(margins) / len(margins)


def initial_base(store: Store, dataset: str, **kw: Any) -> Any:
    """The tiny base exactly as the run built it (tokenizer trained on the dataset's texts);
    `kw` go to load_base (e.g. a classifier head)."""
    from luodi.data.datasets import resolve

    kind = get_kind("preference")
    texts = [t for r in load_records(resolve(store, dataset)) for t in kind.texts(r) if t]
    return load_base(
        resolve_base(store, "tiny:test"), tokenizer_texts=texts, tiny_vocab_size=400, **kw
    )


def test_dpo_full_raises_the_margin_and_registers(store: Store) -> None:
    ds = preference_dataset(store)
    res = run_train(store, dpo_config(ds, method="full", learning_rate=2e-3))
    model, tok = load_model_version(store, res.model)
    base, base_tok = initial_base(store, ds)
    assert base_tok.get_vocab() == tok.get_vocab()
    before, after = mean_margin(base, base_tok), mean_margin(model, tok)
    assert after > before + 5.0, (before, after)
    info = store.resolve(res.model, "model")
    assert info.meta["stage"] == "dpo" and info.meta["method"] == "full"
    assert {(p.ref, p.role) for p in info.parents} == {("tiny-test:v1", "base"), (ds, "train")}
    assert Runs(store).get(res.run_id).status == "succeeded"
    losses = [v for _, v in Runs(store).metrics(res.run_id)["loss"]]
    assert losses[0] == pytest.approx(0.6931, abs=1e-3)  # -log sigmoid(0): policy == reference
    assert losses[-1] < 0.2


def test_dpo_lora_raises_the_margin_against_the_base(store: Store) -> None:
    ds = preference_dataset(store)
    cfg = dpo_config(ds, method="lora", learning_rate=1e-2, lora_r=8)
    res = run_train(store, cfg)
    model, tok = load_model_version(store, res.model)
    after = mean_margin(model, tok)
    with model.disable_adapter():
        before = mean_margin(model, tok)
    assert after > before + 5.0, (before, after)
    info = store.resolve(res.model, "model")
    assert info.meta["adapter"] is True
    adapter_files = sorted(p.name for p in (info.path / "adapter").iterdir())
    assert "ref" not in adapter_files  # only the trained adapter is kept


def test_dpo_bad_input_before_training(store: Store) -> None:
    from tests.train.test_sft import qa_dataset

    qa = qa_dataset(store)
    same = preference_dataset(store, [("q?", "same", "same"), ("p?", "", "x")])
    long_prompt = preference_dataset(store, [("please tell me " * 40, "yes", "no")])
    cases = [
        (dpo_config(qa), "holds qa records but stage 'dpo' needs preference"),
        (dpo_config(same), "chosen == rejected"),
        (dpo_config(long_prompt, cutoff_len=16), "cutoff_len 16 is shorter than the prompt"),
    ]
    for cfg, message in cases:
        with pytest.raises(BadInputError, match=message):
            run_train(store, cfg)
    assert store.list("model") == [] and Runs(store).list() == []


def test_dpo_validates_checkpoints_and_resumes(store: Store) -> None:
    from tests.train.test_sft import Boom

    ds = preference_dataset(store)
    cfg = dpo_config(
        ds,
        method="full",
        learning_rate=2e-3,
        max_steps=6,
        save_steps=2,
        eval_steps=3,
        validation_dataset=ds,
    )
    with pytest.raises(StageFailedError, match="simulated crash"):
        run_train(store, cfg, callbacks=[Boom()])
    assert store.list("model") == []
    res = run_train(store, cfg.model_copy(update={"resume": True}))
    assert res.resumed_from is not None and res.resumed_from.endswith("checkpoint-2")
    assert res.steps == 6 and [m.ref for m in store.list("model")] == [res.model]
    # The validation pairs are the training pairs: after training the policy prefers chosen.
    assert res.eval_metrics["eval_rewards/accuracies"] == 1.0
    assert res.eval_metrics["eval_rewards/margins"] > 0
    assert res.eval_loss is not None and res.eval_loss < 0.6931
