"""PEFT methods: what LoRA trains and where, merging, and every registered method training."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import TrainerCallback

from luodi.errors import BadInputError, MissingDependencyError
from luodi.models.tiny import build_tiny, train_tokenizer
from luodi.store import Store
from luodi.train import TrainConfig, load_model_version, merge, run_train
from luodi.train.peft import METHODS, linear_module_names, resolve_targets
from luodi.train.sft import prompt_for
from tests.helpers import save_qa

PAIRS = [
    ("What are the office hours?", "Monday to Friday, 9am to 6pm."),
    ("年假有多少天？", "入职满一年后每年十五天年假。"),
    ("Who approves travel expenses?", "Your department manager approves them."),
    ("公司在哪里？", "总部位于杭州市西湖区。"),
]
LLAMA_LINEARS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def qa_dataset(store: Store) -> str:
    return save_qa(store, PAIRS)


def cfg_for(dataset: str, **kw: Any) -> TrainConfig:
    base = dict(
        stage="sft",
        base="tiny:test",
        dataset=dataset,
        val_ratio=0.0,
        batch_size=4,
        cutoff_len=96,
        tiny_vocab_size=400,
        learning_rate=1e-2,
        scheduler="constant",
        seed=0,
    )
    return TrainConfig(**{**base, **kw})


class Snapshot(TrainerCallback):
    """Copies the model's state dict when training starts and ends; keeps the optimizer."""

    def __init__(self) -> None:
        self.before: dict[str, torch.Tensor] = {}
        self.after: dict[str, torch.Tensor] = {}
        self.trainable: set[str] = set()
        self.optimizer: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any):
        self.before = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        self.optimizer = kw.get("optimizer")

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any):
        self.after = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def changed(self) -> set[str]:
        return {k for k, v in self.after.items() if not torch.equal(v, self.before[k])}


def test_lora_changes_only_adapters_on_every_linear_but_the_head(store: Store) -> None:
    ds = qa_dataset(store)
    snap = Snapshot()
    res = run_train(store, cfg_for(ds, method="lora", max_steps=5), callbacks=[snap])
    changed = snap.changed()
    assert changed and all("lora_" in k for k in changed)
    # Every lora_B (zero at init) moved; it is what makes the adapter do anything.
    lora_b = {k for k in snap.before if "lora_B" in k}
    assert lora_b <= changed
    # Adapted modules: each of the 7 Llama linears in each of the 2 layers, never lm_head.
    wrapped = {k.split(".lora_A")[0] for k in snap.before if ".lora_A." in k}
    assert len(wrapped) == 7 * 2
    assert {w.rsplit(".", 1)[-1] for w in wrapped} == LLAMA_LINEARS
    assert not any("lm_head" in k or "embed" in k for k in snap.trainable)
    assert snap.trainable == {k for k in snap.before if "lora_" in k}

    # The stored version: base weights untouched (= the freshly built tiny model).
    model, tok = load_model_version(store, res.model)
    fresh = build_tiny("test", tok, seed=0)
    base_sd = model.get_base_model().state_dict()
    for name, value in fresh.state_dict().items():
        key = name.replace(".weight", ".base_layer.weight")
        got = base_sd.get(key, base_sd.get(name))
        assert got is not None and torch.equal(got, value), name


def test_merge_gives_the_same_logits(store: Store) -> None:
    ds = qa_dataset(store)
    res = run_train(store, cfg_for(ds, method="lora", max_steps=4))
    model, tok = load_model_version(store, res.model)
    merged_info = merge(store, res.model)
    assert merged_info.ref == "faq-sft:v2" and merged_info.meta["adapter"] is False
    assert [(p.ref, p.role) for p in merged_info.parents] == [(res.model, "adapter")]
    merged, _ = load_model_version(store, merged_info.ref)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    ids = torch.tensor([prompt_for(tok, [{"role": "user", "content": PAIRS[1][0]}])])
    with torch.no_grad():
        a = model(input_ids=ids).logits
        b = merged(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(BadInputError, match="nothing to merge"):
        merge(store, merged_info.ref)


@pytest.mark.parametrize("method", ["lora_plus", "dora", "prefix", "prompt", "ia3"])
def test_each_method_trains_two_steps(store: Store, method: str) -> None:
    ds = qa_dataset(store)
    snap = Snapshot()
    cfg = cfg_for(ds, method=method, max_steps=2, num_virtual_tokens=4, loraplus_lr_ratio=8)
    res = run_train(store, cfg, callbacks=[snap])
    assert res.steps == 2
    changed = snap.changed()
    assert changed and changed <= snap.trainable  # the frozen base never moves
    assert res.trainable_parameters < res.total_parameters / 3
    model, tok = load_model_version(store, res.model)
    assert store.resolve(res.model, "model").meta["method"] == method
    # The reloaded adapter reproduces the trained one's weights.
    sd = model.state_dict()
    for k in changed:
        stored = next(v for name, v in sd.items() if name.endswith(k.split("base_model.")[-1]))
        assert torch.equal(stored, snap.after[k]), k
    if method == "lora_plus":
        lrs = sorted({g["lr"] for g in snap.optimizer.param_groups if g["params"]})
        assert lrs == pytest.approx([1e-2, 8e-2])
    if method == "ia3":
        ff = model.peft_config["default"].feedforward_modules
        assert set(ff) == {"down_proj"}
    if method in ("prefix", "prompt"):
        with pytest.raises(BadInputError, match="cannot be merged"):
            merge(store, res.model)


def test_target_modules_checked_and_listed() -> None:
    tok = train_tokenizer(["abc def"] * 3, vocab_size=300)
    model = build_tiny("test", tok)
    assert set(linear_module_names(model)) == LLAMA_LINEARS
    assert resolve_targets(model, ["q_proj", "v_proj"]) == ["q_proj", "v_proj"]
    with pytest.raises(BadInputError, match="lm_head.*do not exist.*down_proj"):
        resolve_targets(model, ["lm_head"])
    assert sorted(METHODS) == sorted(
        ["full", "lora", "lora_plus", "dora", "prefix", "prompt", "ia3", "qlora"]
    )


def test_qlora_names_what_is_missing(store: Store) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA present: qlora may run here")
    ds = qa_dataset(store)
    with pytest.raises(MissingDependencyError, match="qlora needs a CUDA GPU"):
        run_train(store, cfg_for(ds, method="qlora", max_steps=1))
    assert store.list("model") == []
