"""The robustness task: fake targets with known behaviour (a robust one, a brittle one, a
keyword classifier counted by hand) and a tiny local model whose answers must be exactly the
base task's on the originals and on the perturbed copies."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from luodi.data.datasets import iter_batches, resolve, save_dataset
from luodi.data.records import get_kind, make_record
from luodi.data.report import DatasetReport
from luodi.errors import BadInputError
from luodi.eval import parse_suite, run_eval
from luodi.eval.perturb import perturb, rng_for
from luodi.eval.targets import GenerationParams, LocalCausalTarget, Prompt, Unsupported
from luodi.eval.tasks import TaskEnv
from luodi.models.tiny import build_tiny, train_tokenizer
from luodi.progress import no_progress
from luodi.store import Store
from tests.helpers import save_qa

QA = [
    ("How do I reset my password?", "Open Settings, choose Security, then Reset."),
    ("What are the office hours?", "Monday to Friday, 9am to 6pm."),
    ("年假有多少天？", "入职满一年后每年十五天年假。"),
    ("报销需要什么材料？请帮助我。", "发票原件和审批单。"),
    ("Where can I find the VPN guide?", "On the intranet under IT."),
]
KINDS = ["typo", "swap", "width", "punct", "synonym", "noise"]


class FakeQA(Unsupported):
    """Answers from a table: the nearest known question (robust) or the exact one (brittle,
    else 'I do not know.')."""

    def __init__(self, table: dict[str, str], *, fuzzy: bool) -> None:
        self.table, self.fuzzy = table, fuzzy
        self.ref, self.artifact = "fake-qa", None
        self.capabilities = frozenset({"generate"})
        self.asked: list[str] = []

    def describe(self) -> dict[str, Any]:
        return {"kind": "fake", "ref": self.ref, "content_hash": None}

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[str]:
        out = []
        for p in prompts:
            assert not isinstance(p, str)
            q = p[-1]["content"]
            self.asked.append(q)
            if self.fuzzy:
                q = difflib.get_close_matches(q, list(self.table), n=1, cutoff=0.0)[0]
            out.append(self.table.get(q, "I do not know."))
        return out


class KeywordClassifier(Unsupported):
    """Labels a text `help` when it contains the word 'help', else `other`."""

    ref, artifact = "keyword-classifier", None
    capabilities = frozenset({"classify"})

    def describe(self) -> dict[str, Any]:
        return {"kind": "fake", "ref": self.ref, "content_hash": None}

    def classify(self, texts: Sequence[str]) -> list[str]:
        return ["help" if "help" in t.lower().split() else "other" for t in texts]


def labeled(store: Store, name: str, rows: list[tuple[str, str, dict[str, Any] | None]]) -> str:
    kind = get_kind("labeled")
    recs = [
        make_record(
            kind,
            source=f"/{name}.csv",
            source_sha256="0" * 64,
            location=f"row {i + 2}",
            ordinal=0,
            meta=meta,
            text=text,
            label=label,
        )
        for i, (text, label, meta) in enumerate(rows)
    ]
    report = DatasetReport(name=name, stage="ingest", record_kind="labeled")
    return save_dataset(store, report, [recs]).dataset


def _results(path: str) -> dict[str, Any]:
    return json.loads((Path(path) / "results.json").read_text(encoding="utf-8"))


def test_robust_target_is_consistent_and_brittle_one_drops(store: Store) -> None:
    save_qa(store, QA)
    suite = parse_suite(
        {"name": "robust", "tasks": [{"task": "robustness", "dataset": "faq", "copies": 2}]}
    )
    table = dict(QA)
    res = run_eval(store, FakeQA(table, fuzzy=True), suite, seed=3)
    (task,) = res.tasks
    m = task.metrics
    assert m["consistency"] == 1.0 and m["drop"] == 0.0
    assert m["token_f1"] == 1.0 and m["token_f1_perturbed"] == 1.0
    for kind in KINDS:
        assert m[f"consistency.{kind}"] == 1.0 and m[f"drop.{kind}"] == 0.0
    body = _results(res.path)["tasks"]["robustness"]
    per_kind = body["details"]["per_perturbation"]
    for kind in KINDS:  # every item has 2 copies of each kind, or none when impossible
        assert per_kind[kind]["items"] * 2 + per_kind[kind]["unchanged_copies"] == len(QA) * 2
    assert per_kind["typo"]["items"] == 3  # two questions have no Latin letter
    ids = {r["id"]: r for r in _records(store)}
    assert len(body["items"]) == len(QA)
    for it in body["items"]:
        question = ids[it["id"]]["messages"][0]["content"]
        assert it["input"] == question and it["prediction"] == table[question]
        for p in it["perturbed"]:  # each copy is perturb() of the question under (seed, id)
            expected = perturb(question, p["kind"], rng_for(3, it["id"], p["kind"], p["copy"]))
            assert p["input"] == expected != question
            assert p["consistent"] is True and p["score"] == 1.0

    brittle = FakeQA(table, fuzzy=False)
    res2 = run_eval(store, brittle, suite, seed=3)
    m2 = res2.tasks[0].metrics
    # No answer shares a token with "I do not know.": every perturbed score is 0.
    assert m2["consistency"] == 0.0 and m2["token_f1"] == 1.0
    assert m2["token_f1_perturbed"] == 0.0 and m2["drop"] == 1.0
    items2 = _results(res2.path)["tasks"]["robustness"]["items"]
    copies = sum(len(it["perturbed"]) for it in items2)
    assert len(brittle.asked) == len(QA) + copies  # originals once, then each copy once
    # Same seed, same copies: the brittle run saw exactly the robust run's perturbed inputs.
    assert [p["input"] for it in items2 for p in it["perturbed"]] == [
        p["input"] for it in body["items"] for p in it["perturbed"]
    ]


def _records(store: Store) -> list[dict[str, Any]]:
    return [r for b in iter_batches(resolve(store, "faq")) for r in b]


def test_classify_base_counted_by_hand(store: Store) -> None:
    labeled(
        store,
        "asks",
        [
            ("Please help me", "help", None),  # -> "Please assist me": other; 1 -> 0
            ("I need a refund", "other", None),  # -> "I require a refund": other; 1 -> 1
            ("Can you check this", "help", None),  # wrong before and after; 0 -> 0
            ("xyz", "other", None),  # no table word: no copy, skipped
            ("", "other", None),  # empty text: the base task skips it
        ],
    )
    suite = parse_suite(
        {
            "name": "asks",
            "tasks": [
                {
                    "task": "robustness",
                    "dataset": "asks",
                    "base": {"task": "classify"},
                    "perturbations": ["synonym"],
                }
            ],
        }
    )
    res = run_eval(store, KeywordClassifier(), suite)
    (task,) = res.tasks
    assert task.counts.records == 5 and task.counts.scored == 3 and task.counts.skipped == 2
    assert task.metrics == pytest.approx(
        {
            "consistency": 2 / 3,
            "accuracy": 2 / 3,
            "accuracy_perturbed": 1 / 3,
            "drop": 1 / 3,
            "consistency.synonym": 2 / 3,
            "accuracy_perturbed.synonym": 1 / 3,
            "drop.synonym": 1 / 3,
        }
    )
    reasons = sorted(p.reason for p in task.problems)
    assert reasons == ["empty text", "no perturbation of the chosen kinds changes its text"]
    items = _results(res.path)["tasks"]["robustness"]["items"]
    assert [p["input"] for it in items for p in it["perturbed"]] == [
        "Please assist me",
        "I require a refund",
        "Can you verify this",
    ]
    assert [it["scores"]["consistency"] for it in items] == [0.0, 1.0, 1.0]


def test_bad_configs_fail_when_the_suite_is_read() -> None:
    cases = [
        ({"base": {"task": "perplexity"}}, "must be one of generate, classify, choice"),
        ({"base": {"task": "classify", "dataset": "x"}}, "set them on the robustness task"),
        ({"perturbations": ["shout"]}, "unknown perturbation"),
        ({"base": {"task": "generate", "max_new_tokens": 0}}, "max_new_tokens"),
    ]
    for extra, message in cases:
        with pytest.raises(BadInputError, match=message):
            parse_suite({"name": "s", "tasks": [{"task": "robustness", "dataset": "d", **extra}]})


def test_wrong_base_for_the_dataset_kind_fails_before_any_task_runs(store: Store) -> None:
    labeled(store, "asks", [("Please help me", "help", None)])
    save_qa(store, QA[:2])
    target = FakeQA(dict(QA), fuzzy=False)
    # A task that would run first (and call the target) ahead of the misconfigured one.
    first = {"task": "generate", "dataset": "faq"}
    suite = parse_suite({"name": "s", "tasks": [first, {"task": "robustness", "dataset": "asks"}]})
    assert suite.tasks[1].kinds() == ("qa",)
    with pytest.raises(
        BadInputError,
        match=re.escape(
            "task 'robustness' needs qa records but dataset asks:v1 holds labeled records; "
            "set base: {task: classify or choice}"
        ),
    ):
        run_eval(store, target, suite)
    assert target.asked == [] and store.list("eval_run") == []
    wrong = {"task": "robustness", "dataset": "faq", "base": {"task": "classify"}}
    suite = parse_suite({"name": "s", "tasks": [first, wrong]})
    assert suite.tasks[1].kinds() == ("labeled",)
    with pytest.raises(BadInputError, match=re.escape("set base: {task: generate}")):
        run_eval(store, target, suite)
    assert target.asked == [] and store.list("eval_run") == []
    # Called directly (no runner), the task still refuses records of the wrong kind.
    records = [r for b in iter_batches(resolve(store, "asks")) for r in b]
    task = parse_suite({"name": "s", "tasks": [{"task": "robustness", "dataset": "asks"}]})
    with pytest.raises(BadInputError, match=re.escape("classify or choice")):
        task.tasks[0].run(target, records, no_progress, TaskEnv(0, lambda r, s: [], lambda r: []))


MC = [
    ("Which planet is red?", ["Venus", "Mars", "Jupiter", "Saturn"], "B"),
    ("中国的首都是哪里？", ["上海", "北京", "广州", "深圳"], "B"),
    ("Which ocean is the largest?", ["Atlantic", "Indian", "Arctic", "Pacific"], "D"),
    ("What do bees make?", ["honey", "silk", "wool", "milk"], "A"),
]


def test_choice_base_on_a_tiny_model_matches_the_choice_task(store: Store) -> None:
    """Originals scored as the choice task scores them; each perturbed copy scored as the
    choice task scores a dataset of the perturbed questions; a rerun is identical."""
    texts = [q + " " + " ".join(o) for q, o, _ in MC] * 3
    tok = train_tokenizer(texts, vocab_size=300)
    target = LocalCausalTarget(build_tiny("test", tok, seed=1), tok, ref="tiny-random")
    rows = [(q, a, dict(zip("ABCD", o, strict=True))) for q, o, a in MC]
    labeled(store, "mc", rows)
    kinds = ["typo", "swap", "noise"]
    suite = parse_suite(
        {
            "name": "mc",
            "tasks": [
                {"task": "choice", "dataset": "mc"},
                {
                    "task": "robustness",
                    "dataset": "mc",
                    "base": {"task": "choice"},
                    "perturbations": kinds,
                },
            ],
        }
    )
    res = run_eval(store, target, suite, seed=5)
    body = _results(res.path)["tasks"]
    plain = {it["id"]: it for it in body["choice"]["items"]}
    rob = body["robustness"]["items"]
    assert len(rob) == len(MC) and all(it["perturbed"] for it in rob)
    assert {it["id"]: it["prediction"] for it in rob} == {
        i: it["prediction"] for i, it in plain.items() if i in {r["id"] for r in rob}
    }
    # The copies as a dataset of their own, scored by the plain choice task.
    question = {r["id"]: r["text"] for b in iter_batches(resolve(store, "mc")) for r in b}
    perturbed_rows = []
    for it in rob:
        for p in it["perturbed"]:
            q, o, a = next(r for r in MC if r[0] == question[it["id"]])
            assert p["input"] == perturb(q, p["kind"], rng_for(5, it["id"], p["kind"], 0))
            perturbed_rows.append((p["input"], a, dict(zip("ABCD", o, strict=True))))
    labeled(store, "mc-perturbed", perturbed_rows)
    again = run_eval(
        store,
        target,
        parse_suite({"name": "p", "tasks": [{"task": "choice", "dataset": "mc-perturbed"}]}),
    )
    expected = [it["prediction"] for it in _results(again.path)["tasks"]["choice"]["items"]]
    assert [p["prediction"] for it in rob for p in it["perturbed"]] == expected
    # Metrics are the means of the item scores.
    m = res.tasks[1].metrics
    assert m["consistency"] == pytest.approx(
        sum(it["scores"]["consistency"] for it in rob) / len(rob)
    )
    shares = [
        sum(p["prediction"] == it["prediction"] for p in it["perturbed"]) / len(it["perturbed"])
        for it in rob
    ]
    assert m["consistency"] == pytest.approx(sum(shares) / len(shares))
    assert m["drop"] == pytest.approx(m["accuracy"] - m["accuracy_perturbed"])
    rerun = run_eval(store, target, suite, seed=5)
    assert rerun.tasks[1].metrics == m
    assert _results(rerun.path)["tasks"]["robustness"]["items"] == rob
