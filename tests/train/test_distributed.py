"""DDP with 2 CPU processes (gloo) through torchrun: trains and registers exactly once."""

from __future__ import annotations

import pytest

from luodi.errors import BadInputError, MissingDependencyError
from luodi.store import Store
from luodi.store.runs import Runs
from luodi.train.config import TrainConfig
from luodi.train.runner import run_train
from tests.helpers import save_qa

QA = [("保修期多久？", "两年。"), ("How to reset AL-101?", "Press RESET twice."),
      ("热线是多少？", "400-861-9527。"), ("最高转速？", "12000 rpm。")]  # fmt: skip


def _faq(store: Store) -> str:
    return save_qa(store, QA * 4)


@pytest.mark.slow
def test_torchrun_two_processes_register_once(store: Store) -> None:
    cfg = TrainConfig(
        stage="sft",
        base="tiny:test",
        dataset=_faq(store),
        name="ddp-bot",
        method="full",
        max_steps=3,
        batch_size=2,
        val_ratio=0,
        launcher="torchrun",
        nproc=2,
    )
    res = run_train(store, cfg)
    assert res is not None and res.model == "ddp-bot:v1" and res.steps == 3
    assert [i.ref for i in store.list("model")] == ["ddp-bot:v1"]
    runs = Runs(store).list(kind="train")
    assert [(r.status, r.artifact_ref) for r in runs] == [("succeeded", "ddp-bot:v1")]
    assert runs[0].config["world_size"] == 2  # really two processes
    assert len(Runs(store).metrics(runs[0].id)["loss"]) >= 1
    # one registered tiny base, shared by both ranks
    assert [i.ref for i in store.list("base_model")] == ["tiny-test:v1"]


def test_torchrun_rejects_resume_and_missing_integrations(store: Store) -> None:
    ds = _faq(store)
    base = dict(stage="sft", base="tiny:test", dataset=ds, max_steps=1, val_ratio=0)
    with pytest.raises(BadInputError, match="resume"):
        run_train(store, TrainConfig(**base, launcher="torchrun", nproc=2, resume=True))
    with pytest.raises(MissingDependencyError, match="pip install mlflow"):
        run_train(store, TrainConfig(**base, report_to=["mlflow"]))
    with pytest.raises(BadInputError, match="not supported"):
        run_train(store, TrainConfig(**base, report_to=["nonsense"]))
    assert store.list("model") == []
