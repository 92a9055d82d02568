"""The real default base: LoRA on SmolLM2-135M-Instruct (GGUF) with the sample FAQ, bf16."""

from __future__ import annotations

from pathlib import Path

import pytest

from luodi.data.clean import CleanConfig, run_clean
from luodi.data.ingest import IngestConfig, run_ingest
from luodi.registry.stages import stage_of
from luodi.store import Store
from luodi.store.runs import Runs
from luodi.train.config import TrainConfig
from luodi.train.runner import run_train

FAQ = Path(__file__).resolve().parents[2] / "examples" / "xinghe" / "faq" / "faq.xlsx"
RECIPE = Path(__file__).resolve().parents[2] / "examples" / "recipes" / "qa.yaml"


@pytest.mark.slow
def test_lora_on_smollm2_registers_an_adapter_version(store: Store) -> None:
    pytest.importorskip("gguf")
    raw = run_ingest(store, IngestConfig(paths=[FAQ], kind="qa", name="faq"))
    clean = run_clean(store, CleanConfig(dataset=raw.dataset, recipe=RECIPE))
    cfg = TrainConfig(
        stage="sft",
        base="default",
        dataset=clean.dataset,
        name="xinghe-assistant",
        method="lora",
        lora_r=16,
        lora_alpha=32,
        target_modules="all",
        learning_rate=2e-3,
        max_steps=6,
        batch_size=8,
        cutoff_len=256,
        compute="bf16",
        val_ratio=0.1,
        eval_steps=6,
    )
    res = run_train(store, cfg)
    assert res.model == "xinghe-assistant:v1"
    assert res.trainable_parameters < res.total_parameters / 10  # only the adapter trains
    info = store.resolve(res.model, "model")
    assert (info.path / "adapter" / "adapter_config.json").exists()
    assert not (info.path / "model").exists()  # the 135M base is not copied
    assert {p.role: p.kind for p in info.parents} == {"base": "base_model", "train": "dataset"}
    assert stage_of(store, res.model) == "candidate"
    losses = [v for _, v in Runs(store).metrics(res.run_id)["loss"]]
    assert losses[-1] < losses[0]  # learning the FAQ, not just running
