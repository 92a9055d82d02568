"""SFT end to end on a tiny model: memorisation, loss masking, bad input, crash and resume."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import yaml
from transformers import TrainerCallback

from luodi.data.datasets import save_dataset
from luodi.data.records import get_kind, make_record
from luodi.data.report import DatasetReport
from luodi.errors import BadInputError, StageFailedError
from luodi.models.chat import stop_token_ids
from luodi.models.tiny import train_tokenizer
from luodi.store import Store
from luodi.store.runs import Runs
from luodi.train import TrainConfig, load_model_version, run_train
from luodi.train import compute as compute_mod
from luodi.train.sft import IGNORE, SftStage, encode_conversation, prompt_for
from tests.helpers import save_qa

QA = [
    ("What are the office hours?", "Monday to Friday, 9am to 6pm."),
    ("How do I reset my password?", "Open Settings, choose Security, then Reset."),
    ("Who approves travel expenses?", "Your department manager approves them."),
    ("Where is the VPN guide?", "On the intranet under IT, VPN setup."),
    ("年假有多少天？", "入职满一年后每年十五天年假。"),
    ("报销需要什么材料？", "发票原件和审批单。"),
    ("公司在哪里？", "总部位于杭州市西湖区。"),
    ("食堂几点开门？", "早上七点半开门。"),
]


def qa_dataset(store: Store, name: str = "faq", pairs: list[tuple[str, str]] = QA) -> str:
    return save_qa(store, pairs, name)


def sft_config(dataset: str, **kw: Any) -> TrainConfig:
    base = dict(
        stage="sft",
        base="tiny:test",
        dataset=dataset,
        val_ratio=0.0,
        batch_size=8,
        scheduler="constant",
        cutoff_len=128,
        tiny_vocab_size=400,
        seed=0,
    )
    return TrainConfig(**{**base, **kw})


def greedy(model: Any, tok: Any, question: str) -> str:
    ids = torch.tensor([prompt_for(tok, [{"role": "user", "content": question}])])
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=40,
            do_sample=False,
            eos_token_id=stop_token_ids(tok),
            pad_token_id=tok.pad_token_id,
        )
    return tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def test_sft_full_memorises_and_registers_with_lineage(store: Store) -> None:
    ds = qa_dataset(store)
    res = run_train(store, sft_config(ds, method="full", max_steps=60, learning_rate=3e-3))
    assert res.model == "faq-sft:v1" and res.steps == 60
    model, tok = load_model_version(store, res.model)
    assert [greedy(model, tok, q) for q, _ in QA] == [a for _, a in QA]

    info = store.resolve(res.model, "model")
    assert {(p.kind, p.ref, p.role) for p in info.parents} == {
        ("base_model", "tiny-test:v1", "base"),
        ("dataset", "faq:v1", "train"),
    }
    assert info.meta["stage"] == "sft" and info.meta["method"] == "full"
    assert info.meta["adapter"] is False and info.meta["run_id"] == res.run_id
    assert (info.path / "model" / "config.json").is_file()
    assert (info.path / "model" / "tokenizer.json").is_file()  # model/ is a full HF folder
    saved = yaml.safe_load((info.path / "train_config.yaml").read_text(encoding="utf-8"))
    assert saved["method"] == "full" and saved["max_steps"] == 60
    assert (info.path / "train_config.yaml").read_text().startswith("# luodi train sft")

    runs = Runs(store)
    run = runs.get(res.run_id)
    assert run.status == "succeeded" and run.artifact_ref == res.model
    metrics = runs.metrics(res.run_id)
    assert [s for s, _ in metrics["loss"]] == list(range(1, 61))  # one row per step
    assert metrics["loss"][-1][1] < metrics["loss"][0][1] / 5
    assert all(v > 0 for _, v in metrics["tokens_per_s"])
    assert metrics["lr"][0][1] == pytest.approx(3e-3)


def test_sft_lora_memorises(store: Store) -> None:
    ds = qa_dataset(store)
    cfg = sft_config(ds, method="lora", max_steps=60, learning_rate=1e-2, lora_r=8)
    res = run_train(store, cfg)
    model, tok = load_model_version(store, res.model)
    assert [greedy(model, tok, q) for q, _ in QA] == [a for _, a in QA]
    with model.disable_adapter():  # the base alone has learnt nothing
        assert sum(greedy(model, tok, q) == a for q, a in QA) == 0
    info = store.resolve(res.model, "model")
    assert info.meta["adapter"] is True and info.meta["base"]["saved"] is True
    assert (info.path / "adapter" / "adapter_config.json").is_file()
    assert res.trainable_parameters < res.total_parameters / 2


def test_labels_cover_only_assistant_content_and_end_multiturn() -> None:
    tok = train_tokenizer(["hello there 你好 世界 answer one two three"] * 5, vocab_size=300)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "answer one"},
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "世界 two"},
    ]
    ids, labels = encode_conversation(tok, messages)
    assert len(ids) == len(labels)
    # Labelled runs of tokens, each decoded: exactly each reply followed by <|im_end|>.
    spans: list[list[int]] = []
    for i, (t, lab) in enumerate(zip(ids, labels, strict=True)):
        if lab == IGNORE:
            continue
        assert lab == t
        if spans and labels[i - 1] != IGNORE:
            spans[-1].append(t)
        else:
            spans.append([t])
    assert [tok.decode(s) for s in spans] == ["answer one<|im_end|>", "世界 two<|im_end|>"]
    # Everything else (system, user turns, role headers) is masked.
    prompt_text = tok.decode([t for t, lab in zip(ids, labels, strict=True) if lab == IGNORE])
    assert prompt_text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n"
        "<|im_start|>assistant\n\n<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n\n"
    )


def test_cutoff_shorter_than_prompt_is_bad_input(store: Store) -> None:
    long_q = "please tell me " * 20 + "what are the office hours?"
    ds = qa_dataset(store, pairs=[(long_q, "9 to 6."), ("short?", "yes.")])
    with pytest.raises(BadInputError, match="cutoff_len 16 is shorter than the prompt"):
        run_train(store, sft_config(ds, method="full", max_steps=2, cutoff_len=16))
    assert store.list("model") == [] and Runs(store).list() == []
    # The stage itself checks too (it is what the runner calls before training).
    tok = train_tokenizer([long_q], vocab_size=300)
    rec = {"id": "r1", "messages": [{"role": "user", "content": long_q}]}
    with pytest.raises(BadInputError, match="no|none"):
        SftStage().build_dataset([rec], tok, sft_config(ds))


def _text_dataset(store: Store, name: str, texts: list[str]) -> str:
    kind = get_kind("text")
    recs = [
        make_record(
            kind, source="/c.txt", source_sha256="1" * 64, location=f"l{i}", ordinal=0, text=t
        )
        for i, t in enumerate(texts)
    ]
    return save_dataset(
        store, DatasetReport(name=name, stage="ingest", record_kind="text"), [recs]
    ).dataset


def test_bad_input_is_reported_before_training(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = qa_dataset(store)
    text_ds = _text_dataset(store, "corpus", ["some text"] * 3)
    empty = save_dataset(
        store, DatasetReport(name="empty", stage="ingest", record_kind="qa"), [[]]
    ).dataset
    cases: list[tuple[TrainConfig, str]] = [
        (sft_config(text_ds, method="full"), "holds text records but stage 'sft' needs qa"),
        (sft_config(empty, method="full"), "empty"),
        (sft_config(ds, target_modules=["q_proj", "nope"]), "'nope'.*q_proj"),
        (sft_config(ds, base="/no/such/model"), "not found"),
        (sft_config(ds, base="tiny:huge"), "unknown tiny preset"),
        (sft_config(ds, compute="fp16"), "fp16 needs a CUDA GPU"),
    ]
    for cfg, message in cases:
        with pytest.raises(BadInputError, match=message):
            run_train(store, cfg)
    monkeypatch.setattr(compute_mod, "bf16_supported", lambda: False)
    with pytest.raises(BadInputError, match="bf16 is not supported"):
        run_train(store, sft_config(ds, compute="bf16"))
    assert store.list("model") == [] and Runs(store).list() == []


class Boom(TrainerCallback):
    """Raises in the middle of training, like a crash would."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.global_step == 3:
            raise RuntimeError("simulated crash")


def test_crash_registers_nothing_and_resume_continues(store: Store) -> None:
    ds = qa_dataset(store)
    cfg = sft_config(ds, method="lora", max_steps=6, save_steps=2, learning_rate=1e-2)
    with pytest.raises(StageFailedError, match="simulated crash") as err:
        run_train(store, cfg, callbacks=[Boom()])
    assert "resume" in str(err.value)
    assert store.list("model") == []
    runs = Runs(store)
    (failed,) = runs.list(kind="train")
    assert failed.status == "failed" and "simulated crash" in (failed.error or "")
    from pathlib import Path

    ckpts = sorted(p.name for p in Path(failed.checkpoint_dir or "").glob("checkpoint-*"))
    assert ckpts == ["checkpoint-2"]
    assert [s for s, _ in runs.metrics(failed.id)["loss"]] == [1, 2]  # step 3 crashed

    res = run_train(store, cfg.model_copy(update={"resume": True}))
    assert res.resumed_from is not None and res.resumed_from.endswith("checkpoint-2")
    assert res.steps == 6 and res.checkpoint_dir == failed.checkpoint_dir
    assert [s for s, _ in runs.metrics(res.run_id)["loss"]] == [3, 4, 5, 6]
    assert runs.get(res.run_id).status == "succeeded"
    assert [m.ref for m in store.list("model")] == ["faq-sft:v1"]
    with pytest.raises(BadInputError, match="nothing to resume"):
        run_train(store, cfg.model_copy(update={"resume": True, "name": "other"}))
