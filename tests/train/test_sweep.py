"""Sweeps: grid and random search over TrainConfig fields, the best trial registered."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from luodi.config import Settings
from luodi.errors import BadInputError, StageFailedError
from luodi.store import Store
from luodi.store.runs import Runs
from luodi.train import load_model_version
from luodi.train import sweep as sweep_mod
from luodi.train.sweep import (
    RangeSpec,
    SweepConfig,
    load_sweep_config,
    plan_params,
    run_sweep,
)
from tests.helpers import run_cli, save_qa

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

TRAIN = {
    "stage": "sft",
    "base": "tiny:test",
    "dataset": "faq",
    "name": "helper",
    "method": "full",
    "val_ratio": 0.25,
    "batch_size": 8,
    "max_steps": 3,
    "cutoff_len": 96,
    "tiny_vocab_size": 400,
    "scheduler": "constant",
    "seed": 0,
}


def qa_dataset(store: Store, name: str = "faq") -> str:
    return save_qa(store, QA, name)


def _logits(store: Store, ref: str) -> torch.Tensor:
    model, tok = load_model_version(store, ref)
    ids = torch.tensor([tok("What are the office hours?")["input_ids"]])
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_grid_sweep_registers_the_lowest_eval_loss_with_lineage(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = Store(Settings(home=home))
    qa_dataset(store)
    (tmp_path / "base.yaml").write_text(
        "# luodi train sft --config base.yaml\n" + yaml.safe_dump(TRAIN), encoding="utf-8"
    )
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(
        "# luodi train sweep --config sweep.yaml\n"
        "config: base.yaml\n"
        "grid:\n  learning_rate: [1.0e-5, 3.0e-3]\n",
        encoding="utf-8",
    )
    res = json.loads(
        run_cli("train", "sweep", "--config", str(sweep_file), "--json", home=home).stdout
    )

    trials = res["trials"]
    assert [t["params"] for t in trials] == [{"learning_rate": 1e-5}, {"learning_rate": 3e-3}]
    assert [t["status"] for t in trials] == ["succeeded", "succeeded"]
    assert [t["model"] for t in trials] == ["helper-trial:v1", "helper-trial:v2"]
    runs = Runs(store)
    for t in trials:
        info = store.resolve(t["model"], "model")
        # The trial's metric is the one its version recorded, and its run's last eval point.
        assert t["metric"] == pytest.approx(info.meta["metrics"]["eval_loss"])
        assert info.meta["config"]["learning_rate"] == t["params"]["learning_rate"]
        assert runs.get(t["run_id"]).artifact_ref == t["model"]
        assert runs.metrics(t["run_id"])["eval_loss"][-1][1] == pytest.approx(t["metric"])
    assert trials[0]["metric"] != trials[1]["metric"]
    best = min(trials, key=lambda t: t["metric"])
    assert res["best"]["index"] == best["index"] and res["model"] == "helper:v1"

    info = store.resolve("helper", "model")
    assert info.ref == "helper:v1"
    roles = {p.role: p.ref for p in info.parents}
    assert roles == {"base": "tiny-test:v1", "train": "faq:v1", "trial": best["model"]}
    assert info.meta["sweep"]["params"] == best["params"]
    assert info.meta["sweep"]["value"] == pytest.approx(best["metric"])
    assert info.meta["sweep"]["run_id"] == res["run_id"]
    assert (info.path / "sweep.yaml").read_text().startswith("# luodi train sweep --config")
    assert [t["model"] for t in json.loads((info.path / "sweep.json").read_text())] == [
        "helper-trial:v1",
        "helper-trial:v2",
    ]
    # Same weights as the winning trial: it loads to identical logits.
    trial = store.resolve(best["model"], "model")
    weights = "model/model.safetensors"
    assert (info.path / weights).read_bytes() == (trial.path / weights).read_bytes()
    assert torch.equal(_logits(store, "helper"), _logits(store, best["model"]))
    # Only the winner is a version of the name; the sweep is a run with one point per trial.
    assert [m.ref for m in store.list("model", "helper")] == ["helper:v1"]
    sweep_run = runs.get(res["run_id"])
    assert sweep_run.kind == "sweep" and sweep_run.status == "succeeded"
    assert sweep_run.artifact_ref == "helper:v1"
    points = runs.metrics(res["run_id"])["eval_loss"]
    assert points == [
        (1, pytest.approx(trials[0]["metric"])),
        (2, pytest.approx(trials[1]["metric"])),
    ]
    store.close()


def test_random_search_is_deterministic_with_a_seed() -> None:
    cfg = SweepConfig(
        train=TRAIN,
        random={
            "learning_rate": RangeSpec(low=1e-5, high=1e-2, log=True),
            "lora_r": RangeSpec(low=2, high=16, integer=True),
            "method": ["lora", "dora"],
        },
        trials=6,
        seed=3,
    )
    plan = plan_params(cfg)
    assert plan == plan_params(cfg.model_copy()) and len(plan) == 6
    assert plan != plan_params(cfg.model_copy(update={"seed": 4}))
    for p in plan:
        assert 1e-5 <= p["learning_rate"] <= 1e-2
        assert isinstance(p["lora_r"], int) and 2 <= p["lora_r"] <= 16
        assert p["method"] in ("lora", "dora")
    # Log-uniform: a decade-spanning range is not crowded at its top as a uniform draw would be.
    many = plan_params(cfg.model_copy(update={"trials": 400}))
    below = sum(p["learning_rate"] < 1e-3 for p in many) / len(many)
    assert 0.55 < below < 0.8  # 2/3 of log space lies below 1e-3 (uniform: 9%)
    # The same config read back from YAML plans the same trials.
    grid = plan_params(SweepConfig(train=TRAIN, grid={"lora_r": [4, 8], "method": ["lora", "ia3"]}))
    assert grid == [
        {"lora_r": 4, "method": "lora"},
        {"lora_r": 4, "method": "ia3"},
        {"lora_r": 8, "method": "lora"},
        {"lora_r": 8, "method": "ia3"},
    ]


def test_random_sweep_runs_and_a_failing_trial_is_recorded(store: Store) -> None:
    qa_dataset(store)
    # The second trial adapts a module the model lacks: it fails, the sweep goes on.
    cfg = SweepConfig(
        train={**TRAIN, "method": "lora", "max_steps": 2, "val_ratio": 0.0},
        random={"target_modules": [["q_proj"], ["nope"]], "learning_rate": [1e-3]},
        trials=3,
        seed=1,
        metric="train_loss",
    )
    planned = plan_params(cfg)
    assert planned == plan_params(cfg)
    res = run_sweep(store, cfg)
    assert [t.params for t in res.trials] == planned
    ok = [t for t in res.trials if t.params["target_modules"] == ["q_proj"]]
    bad = [t for t in res.trials if t.params["target_modules"] == ["nope"]]
    assert ok and bad
    assert all(t.status == "succeeded" and t.metric is not None for t in ok)
    assert all(t.status == "failed" and "nope" in (t.error or "") for t in bad)
    assert all(t.model is None for t in bad)
    best = min(ok, key=lambda t: (t.metric, t.index))
    assert res.best.index == best.index and res.model == "helper:v1"
    info = store.resolve("helper", "model")
    assert info.meta["metrics"]["train_loss"] == pytest.approx(best.metric)
    assert {p.role: p.ref for p in info.parents}["trial"] == best.model
    assert math.isfinite(res.best.metric or math.nan)


def test_bad_sweeps_fail_before_training(store: Store, tmp_path: Path) -> None:
    qa_dataset(store)
    cases: list[tuple[SweepConfig, str]] = [
        (
            SweepConfig(train=TRAIN, grid={"learning_rat": [1e-3], "colour": [1]}),
            "learning_rat, colour",
        ),
        # The first trial is fine, the second is not: nothing trains at all.
        (SweepConfig(train=TRAIN, grid={"learning_rate": [1e-3, -1.0]}), "trial 2.*learning_rate"),
        (SweepConfig(train={**TRAIN, "val_ratio": 0.0}, grid={"seed": [1]}), "needs validation"),
        (SweepConfig(train=TRAIN, grid={"name": ["a", "b"]}), "cannot search or set name"),
        (SweepConfig(train={**TRAIN, "dataset": "nope"}, grid={"seed": [1]}), "nope"),
    ]
    for cfg, message in cases:
        with pytest.raises(BadInputError, match=message):
            run_sweep(store, cfg)
    assert store.list("model") == [] and Runs(store).list() == []
    # Every trial failing is an error too, and nothing is registered under the name.
    all_bad = SweepConfig(
        train={**TRAIN, "method": "lora"}, grid={"target_modules": [["nope"], ["nada"]]}
    )
    with pytest.raises(BadInputError, match="every trial.*nope.*nada"):
        run_sweep(store, all_bad)
    assert store.list("model") == []
    (sweep_run,) = Runs(store).list(kind="sweep")
    assert sweep_run.status == "failed"
    # Config files: unknown keys, both searches, a range upside down.
    for text, message in [
        ("grid: {seed: [1]}\ncolour: red\n", "colour"),
        ("grid: {seed: [1]}\nrandom: {seed: [1]}\ntrials: 1\n", "exactly one of grid or random"),
        ("random: {learning_rate: {low: 1, high: 0}}\ntrials: 2\n", "above high"),
        ("random: {seed: [1, 2]}\n", "needs trials"),
    ]:
        f = tmp_path / "s.yaml"
        f.write_text(text, encoding="utf-8")
        with pytest.raises(BadInputError, match=message):
            load_sweep_config(f)


def test_ctrl_c_stops_the_sweep_and_registers_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    qa_dataset(store)
    calls: list[str] = []

    def interrupted(store_: Store, cfg: object, progress: object) -> None:
        calls.append(str(getattr(cfg, "name", "")))
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_mod, "run_train", interrupted)
    with pytest.raises(StageFailedError, match="interrupted after 0 of 2"):
        run_sweep(store, SweepConfig(train=TRAIN, grid={"learning_rate": [1e-3, 1e-2]}))
    assert calls == ["helper-trial"]  # the second trial never started
    (sweep_run,) = Runs(store).list(kind="sweep")
    assert sweep_run.status == "interrupted" and store.list("model") == []
