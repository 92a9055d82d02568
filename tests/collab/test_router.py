"""Router training for route composites: keyword and embedding routers trained on Chinese
manufacturing questions against the built-in general prompts, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from luodi.collab.composite import CompositeConfig, create_composite, load_composite
from luodi.collab.general import GENERAL_PROMPTS
from luodi.collab.router import choose_threshold, heldout_metrics, train_router
from luodi.config import Settings
from luodi.errors import BadInputError, NotFoundError
from luodi.store import Store
from tests.collab.data import DOMAIN_PROBES, DOMAIN_QUESTIONS, GENERAL_PROBES
from tests.helpers import run_cli, save_qa

DOMAIN = "openai:http://domain.invalid/v1#mfg"
GENERAL = "openai:http://general.invalid/v1#chat"
BARS = {"keyword": 0.9, "embedding": 0.95}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    store = Store(Settings(home=tmp_path))
    save_qa(store, [(q, "见设备手册") for q in DOMAIN_QUESTIONS], name="mfg")
    save_qa(store, [], name="empty")
    store.close()
    return tmp_path


def _create(home: Path, name: str, *extra: str, check: bool = True):  # noqa: ANN202
    """`luodi models composite create NAME` (domain and general default to two endpoints;
    a later --domain wins)."""
    args = ["models", "composite", "create", name, "--domain", DOMAIN, "--general", GENERAL]
    return run_cli(*args, *extra, "--json", home=home, check=check)


@pytest.mark.parametrize("classifier", ["keyword", "embedding"])
def test_router_separates_domain_from_general(home: Path, classifier: str) -> None:
    out = json.loads(
        _create(
            home, "collab", "--mode", "route", "--data", "mfg", "--classifier", classifier
        ).stdout
    )
    held = out["heldout"]
    # 24 domain questions and 65 built-in prompts, a quarter of each held out: 6 + 16 items.
    assert (held["domain_items"], held["general_items"]) == (6, 16)
    assert (held["train_domain"], held["train_general"]) == (18, 49)
    # Hand-checked over seeds 0-2: the embedding router (e5) separated every held-out item;
    # the keyword router, which knows only the terms of 18 questions, got 20-21 of 22 right.
    assert held["accuracy"] >= BARS[classifier]
    assert held["balanced_accuracy"] >= 0.8

    store = Store(Settings(home=home))
    info = store.resolve("collab", "composite")
    assert {(p.kind, p.ref, p.role) for p in info.parents} == {("dataset", "mfg:v1", "router_data")}
    assert info.meta["heldout"] == held and info.meta["classifier"] == classifier
    comp = load_composite(store, "collab")
    decided = comp.route(DOMAIN_PROBES + GENERAL_PROBES)
    assert decided[:6].count("domain") >= 5 and decided[6:].count("general") >= 5
    if classifier == "keyword":
        weights = json.loads((info.path / "router" / "keywords.json").read_text("utf-8"))
        assert weights["数控"] > 0  # a machining term
        most_general = min(weights, key=weights.get)
        assert any(most_general in p.lower() for p in GENERAL_PROMPTS)
        assert not any(most_general in q.lower() for q in DOMAIN_QUESTIONS)

    shown = run_cli("models", "composite", "route", "collab", DOMAIN_PROBES[0], "--json", home=home)
    assert json.loads(shown.stdout)[0]["member"] == "domain"
    store.close()


def test_heldout_metrics_and_threshold_match_sklearn() -> None:
    dom = np.array([0.9, 0.4, 0.7, 0.2], dtype=np.float32)
    gen = np.array([0.1, 0.3, 0.5, 0.0, -0.2, 0.25], dtype=np.float32)
    t = choose_threshold(dom, gen)
    y = [1] * 4 + [0] * 6
    pred = [int(s >= t) for s in np.concatenate([dom, gen])]
    got = heldout_metrics(dom, gen, t)
    assert got["accuracy"] == round(accuracy_score(y, pred), 4)
    assert got["balanced_accuracy"] == round(balanced_accuracy_score(y, pred), 4)
    # Best balanced accuracy over every cut (by brute force over a fine grid).
    best = max(
        balanced_accuracy_score(y, [int(s >= c) for s in np.concatenate([dom, gen])])
        for c in np.linspace(-1, 1, 2001)
    )
    assert got["balanced_accuracy"] == round(best, 4)


def test_too_few_prompts_is_refused() -> None:
    with pytest.raises(BadInputError, match="at least 4 distinct domain prompts"):
        train_router(["数控机床", "数控机床", "注塑机"], ["hello"] * 10, "keyword")


def test_bad_input_exits_2_and_registers_nothing(home: Path) -> None:
    cases = [
        (["--mode", "route", "--data", "empty"], "has no prompts"),
        (["--mode", "route"], "needs --data"),
        (["--mode", "cascade", "--domain", "no-such-model"], "no-such-model"),
    ]
    for extra, message in cases:
        proc = _create(home, "collab", *extra, check=False)
        assert proc.returncode == 2 and message in proc.stderr, (extra, proc.stderr)
    store = Store(Settings(home=home))
    bad = [
        ({"mode": "route", "data": "nope"}, NotFoundError, "dataset 'nope' not found"),
        ({"mode": "route", "data": "mfg", "classifier": "svm"}, ValueError, "unknown classifier"),
        ({"mode": "cascade", "general": DOMAIN}, BadInputError, "needs two models"),
        ({"mode": "cascade", "cascade": {"knowledge_base": "kb0"}}, NotFoundError, "kb0"),
    ]
    for fields, error, message in bad:
        with pytest.raises(error, match=message):
            cfg = {"name": "collab", "domain": DOMAIN, "general": GENERAL} | fields
            create_composite(store, CompositeConfig.model_validate(cfg))
    assert store.list("composite") == []
    assert not list((home / "artifacts" / "composite").glob("*/.tmp-*"))
    store.close()
