"""reward on a tiny model: chosen answers end up scored above rejected ones."""

from __future__ import annotations

from typing import Any

import pytest

from luodi.errors import BadInputError
from luodi.store import Store
from luodi.store.runs import Runs
from luodi.train import TrainConfig, load_model_version, run_train
from luodi.train.reward import score
from tests.train.test_classify import labeled_dataset
from tests.train.test_dpo import PAIRS, initial_base, preference_dataset


def reward_config(dataset: str, **kw: Any) -> TrainConfig:
    base = dict(
        stage="reward",
        base="tiny:test",
        dataset=dataset,
        val_ratio=0.0,
        batch_size=6,
        scheduler="constant",
        cutoff_len=96,
        tiny_vocab_size=400,
        seed=0,
        max_steps=30,
    )
    return TrainConfig(**{**base, **kw})


def wins(model: Any, tok: Any) -> tuple[int, float]:
    """(pairs whose chosen answer outscores the rejected one, mean score gap)."""
    chosen = score(model, tok, [(p, c) for p, c, _ in PAIRS], cutoff_len=96)
    rejected = score(model, tok, [(p, r) for p, _, r in PAIRS], cutoff_len=96)
    gaps = [c - r for c, r in zip(chosen, rejected, strict=True)]
    return sum(g > 0 for g in gaps), sum(gaps) / len(gaps)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_reward_model_prefers_chosen_answers(store: Store, method: str) -> None:
    ds = preference_dataset(store)
    lr = 3e-3 if method == "full" else 1e-2
    res = run_train(store, reward_config(ds, method=method, learning_rate=lr))
    model, tok = load_model_version(store, res.model)
    assert model.config.num_labels == 1
    won, gap = wins(model, tok)
    assert won == len(PAIRS) and gap > 1.0
    if method == "lora":
        with model.disable_adapter():  # the base with its untrained head
            won_before, gap_before = wins(model, tok)
    else:
        base, base_tok = initial_base(store, ds, task="classify", num_labels=1)
        assert base_tok.get_vocab() == tok.get_vocab()
        won_before, gap_before = wins(base, base_tok)
    assert gap > gap_before + 1.0 and won_before < len(PAIRS), (won_before, gap_before)
    info = store.resolve(res.model, "model")
    assert info.meta["stage"] == "reward" and info.meta["task"] == "classify"
    losses = [v for _, v in Runs(store).metrics(res.run_id)["loss"]]
    assert losses[-1] < losses[0] / 3


def test_reward_bad_input_before_training(store: Store) -> None:
    labeled = labeled_dataset(store, [("a b", "x"), ("c d", "y")])
    long_prompt = preference_dataset(store, [("please tell me " * 40, "yes", "no")])
    cases = [
        (reward_config(labeled), "holds labeled records but stage 'reward' needs preference"),
        (reward_config(long_prompt, cutoff_len=16), "cutoff_len 16 is shorter than the prompt"),
    ]
    for cfg, message in cases:
        with pytest.raises(BadInputError, match=message):
            run_train(store, cfg)
    assert store.list("model") == [] and Runs(store).list() == []
