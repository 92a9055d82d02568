"""Backend fixtures: a tiny model trained to memorise answers (registered in a store) and an
untrained tiny model (for long replies that never hit an end token)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from luodi.config import Settings
from luodi.store import Store
from luodi.train import TrainConfig, run_train
from tests.helpers import save_qa

QA = [
    ("What are the office hours?", "Monday to Friday, 9am to 6pm."),
    ("年假有多少天？", "入职满一年后每年十五天年假。"),
    ("Who approves travel expenses?", "Your department manager approves them."),
    ("How do I reset my password?", "Open Settings, choose Security, then Reset."),
]


@pytest.fixture(scope="session")
def helpdesk_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A luodi home holding model `helpdesk:v1` (tiny:test, SFT to memorise QA)."""
    home = tmp_path_factory.mktemp("backends") / "home"
    store = Store(Settings(home=home))
    cfg = TrainConfig(
        stage="sft",
        base="tiny:test",
        dataset=save_qa(store, QA),
        name="helpdesk",
        method="full",
        val_ratio=0.0,
        batch_size=4,
        max_steps=60,
        learning_rate=3e-3,
        scheduler="constant",
        cutoff_len=96,
        tiny_vocab_size=400,
        seed=0,
    )
    assert run_train(store, cfg).model == "helpdesk:v1"
    store.close()
    return home


@pytest.fixture
def helpdesk_store(helpdesk_home: Path) -> Iterator[Store]:
    s = Store(Settings(home=helpdesk_home))
    yield s
    s.close()


@pytest.fixture(scope="session")
def random_lm() -> tuple[Any, Any]:
    """(model, tokenizer) of an untrained tiny Llama: greedy replies run to max_tokens."""
    from luodi.models.tiny import build_tiny, train_tokenizer

    texts = [q + " " + a for q, a in QA] * 10
    tok = train_tokenizer(texts, 400)
    return build_tiny("test", tok, seed=0), tok
