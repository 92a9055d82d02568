"""A composite evaluated like any model: `luodi eval run COMPOSITE` scores it through its
members (deployments of a real gateway with scripted backends), the run records which member
answered each item, and a cascade falls back on the retrieval and marker checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from luodi.collab.composite import CompositeConfig, create_composite
from luodi.collab.target import open_composite_target
from luodi.config import Settings
from luodi.eval import load_suite, run_eval
from luodi.eval.targets import GenerationParams, open_target
from luodi.rag.kb import add_documents, create_kb
from luodi.rag.kb_models import KBConfig
from luodi.store import Store
from tests.collab.data import DOMAIN_PROBES, DOMAIN_QUESTIONS, GENERAL_PROBES
from tests.helpers import run_cli, save_qa
from tests.serve.conftest import Gw, fake_route, gateway

SUITE = "name: collab-check\ntasks:\n  - {task: generate, dataset: heldout, max_new_tokens: 32}\n"


def _members(home: Path):  # noqa: ANN202
    deps = [
        {"name": "domain-llm", "routes": [fake_route("domainbot")]},
        {"name": "general-llm", "routes": [fake_route("generalbot")]},
    ]
    return gateway(home, deps)


def _urls(up: Gw) -> dict[str, str]:
    return {
        "domain": f"openai:{up.url}/v1#domain-llm",
        "general": f"openai:{up.url}/v1#general-llm",
    }


def test_eval_run_scores_a_route_composite_through_its_members(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "front"
    store = Store(Settings(home=home))
    save_qa(store, [(q, "见设备手册") for q in DOMAIN_QUESTIONS], name="mfg")
    # The reference answer is what the right member says: only a composite routing every
    # question to the right model gets them all.
    save_qa(
        store,
        [(q, f"domainbot: {q}") for q in DOMAIN_PROBES]
        + [(q, f"generalbot: {q}") for q in GENERAL_PROBES],
        name="heldout",
    )
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE, encoding="utf-8")
    with _members(tmp_path / "members") as up:
        cfg = {"name": "xinghe-collab", "mode": "route", "data": "mfg", "classifier": "keyword"}
        create_composite(store, CompositeConfig.model_validate(cfg | _urls(up)))
        env = {"LUODI_EVAL_API_KEY": up.admin_key}
        args = ("eval", "run", "xinghe-collab", "--suite", str(suite), "--json")
        both = json.loads(run_cli(*args, home=home, env=env).stdout)
        monkeypatch.setenv("LUODI_EVAL_API_KEY", up.admin_key)
        alone = run_eval(store, _urls(up)["domain"], load_suite(suite))
    assert both["status"] == "complete" and both["target"] == "xinghe-collab:v1"
    (task,) = both["tasks"]
    assert task["metrics"]["exact_match"] == 1.0
    assert alone.tasks[0].metrics["exact_match"] == 0.5  # the domain model alone

    run = store.resolve(both["run"], "eval_run")
    assert ("composite", "xinghe-collab:v1", "target") in {
        (p.kind, p.ref, p.role) for p in run.parents
    }
    target = json.loads((run.path / "run.json").read_text("utf-8"))["target"]
    assert target["kind"] == "composite" and target["answered"] == {"domain": 6, "general": 6}
    assert sorted(target["served_by"]) == sorted(
        [f"xinghe-collab:v1>{_urls(up)['domain']}"] * 6
        + [f"xinghe-collab:v1>{_urls(up)['general']}"] * 6
    )
    store.close()


def test_cascade_target_falls_back_on_retrieval_and_markers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(Settings(home=tmp_path / "front"))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "press.md").write_text(
        "# Press maintenance\n\nStamping press dies must be sharpened every 20000 strokes. "
        "Burrs on stamped parts above 0.1 mm mean the die edge is worn.\n",
        encoding="utf-8",
    )
    create_kb(store, KBConfig(name="manuals", embedder="minilm"))
    add_documents(store, "manuals", [docs / "press.md"])
    with _members(tmp_path / "members") as up:
        monkeypatch.setenv("LUODI_EVAL_API_KEY", up.admin_key)
        cascade = {"knowledge_base": "manuals"}
        cfg = {"name": "careful", "mode": "cascade", "cascade": cascade} | _urls(up)
        info = create_composite(store, CompositeConfig.model_validate(cfg))
        assert info.cascade is not None and info.cascade.knowledge_base == "manuals:v2"
        art = store.resolve("careful", "composite")
        assert ("knowledge_base", "manuals:v2") in {(p.role, p.ref) for p in art.parents}

        target = open_target(store, "composite:careful")
        assert target.capabilities == frozenset({"generate"})
        questions = [
            "How often must stamping press dies be sharpened?",  # in the manual: domain
            "Who painted the Mona Lisa?",  # unrelated to the manual: general at once
            "say:I don't know how stamping press dies work.",  # domain unsure: general
        ]
        replies = target.generate(questions, GenerationParams(max_new_tokens=32))
        assert replies == [
            f"domainbot: {questions[0]}",
            f"generalbot: {questions[1]}",
            "I don't know how stamping press dies work.",
        ]
        assert target.served[0].endswith("#domain-llm")
        assert [s.split("#")[1] for s in target.served] == [
            "domain-llm",
            "general-llm",
            "general-llm",
        ]
        assert target.fallbacks == {"retrieval": 1, "markers": 1}
        # The domain model was asked twice (not for the unrelated question).
        assert (up.opened["domainbot"].calls, up.opened["generalbot"].calls) == (2, 2)
        again = open_composite_target(store, "careful")
        assert again.describe()["mode"] == "cascade"
    store.close()
