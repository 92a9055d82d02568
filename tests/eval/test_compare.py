"""Bootstrap intervals, compare_runs and gate over eval runs registered in a real store.

The eval runs are registered by hand (`store.create("eval_run", ...)` with a results.json in
the runner's layout) so these tests need neither models nor the runner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from luodi.errors import BadInputError, NotFoundError
from luodi.eval.compare import compare_runs, resolve_eval_run
from luodi.eval.gate import EVAL_GATE, GateRules, gate, gate_rules_yaml, load_gate_rules
from luodi.eval.stats import bootstrap_ci, bootstrap_diff
from luodi.registry.stages import set_stage
from luodi.store import ArtifactInfo, Store
from tests.helpers import run_cli

SUITE = "support-suite"
N = 200


# -- building fake eval runs ----------------------------------------------------------------
def _faq(f1: np.ndarray, ids: list[str] | None = None, bleu: float = 30.0) -> dict[str, Any]:
    """A generate-like task: per-item token_f1 and exact_match, corpus BLEU only reported."""
    ids = ids or [f"q{i:03d}" for i in range(len(f1))]
    em = (f1 > 0.6).astype(float)
    items = [
        {"id": i, "input": f"问题{i}", "prediction": "…", "reference": "…",
         "scores": {"token_f1": float(f), "exact_match": float(e)}}
        for i, f, e in zip(ids, f1, em, strict=True)
    ]  # fmt: skip
    metrics = {"token_f1": float(f1.mean()), "exact_match": float(em.mean()), "bleu": bleu}
    return {"metrics": metrics, "items": items}


def _wiki(nll: np.ndarray) -> dict[str, Any]:
    """A perplexity-like task: lower is better; per-item nll, corpus perplexity."""
    items = [{"id": f"d{i}", "scores": {"nll": float(x)}} for i, x in enumerate(nll)]
    return {"metrics": {"perplexity": float(np.exp(nll.mean()))}, "items": items}


def _tickets(correct: np.ndarray) -> dict[str, Any]:
    """A classify-like task with nested metrics and a confusion matrix (a list, not a metric)."""
    items = [{"id": f"t{i}", "scores": {"accuracy": float(c)}} for i, c in enumerate(correct)]
    acc = float(correct.mean())
    metrics = {
        "accuracy": acc,
        "macro_f1": acc - 0.05,
        "per_class": {"账单": {"f1": 0.7, "support": 10}, "物流": {"f1": 0.6, "support": 12}},
        "confusion_matrix": [[7, 3], [4, 8]],
    }
    return {"metrics": metrics, "items": items}


def make_run(
    store: Store,
    tasks: dict[str, dict[str, Any]],
    *,
    status: str = "complete",
    target: ArtifactInfo | None = None,
    suite: str = SUITE,
    measured: list[str] | None = None,
) -> ArtifactInfo:
    """Register an eval run the way the runner does (results.json + meta + target parent);
    `measured` lists the tasks whose numbers are measurements (meta `measured_tasks`)."""
    meta = {
        "suite": suite,
        "status": status,
        "target": {"ref": target.ref if target else "http://upstream/v1", "hash": "x"},
        "metrics": {t: v["metrics"] for t, v in tasks.items()},
        "measured_tasks": measured or [],
    }
    parents = [(target, "target")] if target else []
    with store.create("eval_run", suite, parents=parents, meta=meta) as d:
        results = json.dumps({"tasks": tasks}, ensure_ascii=False)
        (d.path / "results.json").write_text(results, encoding="utf-8")
    assert d.artifact is not None
    return d.artifact


def make_model(store: Store, name: str = "客服模型") -> ArtifactInfo:
    with store.create("model", name, meta={"method": "lora"}) as d:
        (d.path / "adapter.bin").write_bytes(b"weights")
    assert d.artifact is not None
    return d.artifact


@pytest.fixture
def base_f1() -> np.ndarray:
    return np.random.default_rng(1).uniform(0.2, 0.8, N)


def _shifted(a: np.ndarray, shift: float, seed: int = 2) -> np.ndarray:
    return np.clip(a + shift + np.random.default_rng(seed).normal(0, 0.05, a.size), 0, 1)


# -- bootstrap ----------------------------------------------------------------------------
def test_bootstrap_is_deterministic_with_a_seed() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.5, 0.2, 100), rng.normal(0.55, 0.2, 100)
    first = bootstrap_diff(a, b, seed=3)
    assert bootstrap_diff(a, b, seed=3) == first
    assert bootstrap_diff(list(a), list(b), seed=3) == first  # lists or arrays alike
    other = bootstrap_diff(a, b, seed=4)
    assert (other.low, other.high) != (first.low, first.high)
    assert bootstrap_ci(a, seed=5) == bootstrap_ci(a, seed=5)


def test_planted_difference_is_significant_identical_runs_are_not() -> None:
    rng = np.random.default_rng(42)
    a = rng.normal(0.5, 0.15, 200)
    b = a + 0.2 + rng.normal(0, 0.1, 200)
    d = bootstrap_diff(a, b)
    assert d.significant and d.paired and 0.17 < d.low < d.diff < d.high < 0.23
    assert d.diff == pytest.approx(float(np.mean(b - a)), abs=1e-12)
    same = bootstrap_diff(a, a.copy())
    assert not same.significant and same.low <= 0 <= same.high
    # Two independent samples of one distribution: no difference found either.
    c = rng.normal(0.5, 0.15, 200)
    indep = bootstrap_diff(a, c, paired=False)
    assert not indep.significant and indep.low < 0 < indep.high


def test_pairing_detects_what_independent_samples_cannot() -> None:
    # Items differ a lot in difficulty; the candidate is better on each by a little.
    rng = np.random.default_rng(7)
    a = rng.uniform(0, 1, 150)
    b = a + 0.03 + rng.normal(0, 0.02, 150)
    assert bootstrap_diff(a, b, paired=True).significant
    assert not bootstrap_diff(a, b, paired=False).significant


def test_bootstrap_ci_matches_the_normal_approximation() -> None:
    x = np.random.default_rng(11).normal(3.0, 2.0, 2000)
    ci = bootstrap_ci(x, n=4000)
    half = 1.959964 * x.std(ddof=1) / np.sqrt(x.size)  # ≈ 0.0877
    assert ci.value == pytest.approx(x.mean(), abs=1e-12)
    assert ci.low == pytest.approx(x.mean() - half, abs=0.1 * half)
    assert ci.high == pytest.approx(x.mean() + half, abs=0.1 * half)


def test_bootstrap_rejects_bad_input() -> None:
    with pytest.raises(BadInputError, match="non-empty"):
        bootstrap_ci([])
    with pytest.raises(BadInputError, match="1 of 3 values are NaN"):
        bootstrap_diff([1.0, float("nan"), 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(BadInputError, match="a has 3, b has 2"):
        bootstrap_diff([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(BadInputError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=1.5)


# -- compare ------------------------------------------------------------------------------
def test_compare_matches_items_by_id_and_marks_a_significant_improvement(
    store: Store, base_f1: np.ndarray
) -> None:
    ids = [f"q{i:03d}" for i in range(N)]
    new_f1 = _shifted(base_f1, 0.2)
    # The candidate lost items q000-q004 and scored 3 items the baseline never saw.
    cand_ids = ids[5:] + ["new1", "new2", "new3"]
    cand_f1 = np.concatenate([new_f1[5:], [0.9, 0.9, 0.9]])
    a = make_run(store, {"faq": _faq(base_f1, ids, bleu=30.0)})
    b = make_run(store, {"faq": _faq(cand_f1, cand_ids, bleu=34.5)})
    cmp = compare_runs(store, [a.ref, b.ref])
    assert [r.ref for r in cmp.runs] == [f"{SUITE}:v1", f"{SUITE}:v2"]
    (task,) = cmp.tasks
    assert task.items == [N, N - 2]
    pair = task.pairs[0]
    assert (pair.matched, pair.only_in_first, pair.only_in_run) == (N - 5, 5, 3)
    rows = {m.metric: m for m in task.metrics}
    assert set(rows) == {"token_f1", "exact_match", "bleu"}
    f1 = rows["token_f1"]
    assert f1.values == pytest.approx([base_f1.mean(), cand_f1.mean()], abs=1e-12)
    d = f1.diffs[0]
    assert d.diff == pytest.approx(cand_f1.mean() - base_f1.mean(), abs=1e-12)
    # The interval is over the 195 matched items only.
    assert d.ci is not None and d.ci.paired and d.ci.n_a == N - 5
    assert d.ci.diff == pytest.approx(float(np.mean(new_f1[5:] - base_f1[5:])), abs=1e-12)
    assert d.significant and d.change == "better" and d.ci.low > 0.15
    # BLEU exists only at corpus level: a difference, no interval.
    bleu = rows["bleu"].diffs[0]
    assert bleu.diff == pytest.approx(4.5) and bleu.ci is None and bleu.change == "untested"
    assert compare_runs(store, [a.ref, b.ref]) == cmp  # deterministic


def test_compare_three_runs_and_tasks_missing_from_one(store: Store, base_f1: np.ndarray) -> None:
    nll = np.random.default_rng(3).normal(3.0, 0.3, 80)
    a = make_run(store, {"faq": _faq(base_f1), "wiki": _wiki(nll)})
    b = make_run(store, {"faq": _faq(base_f1.copy())})
    c = make_run(store, {"faq": _faq(_shifted(base_f1, -0.2)), "wiki": _wiki(nll + 0.5)})
    cmp = compare_runs(store, [a.ref, b.ref, c.ref])
    tasks = {t.task: t for t in cmp.tasks}
    faq = {m.metric: m for m in tasks["faq"].metrics}
    assert [d.change for d in faq["token_f1"].diffs] == ["unchanged", "worse"]
    assert faq["token_f1"].diffs[0].diff == 0.0
    wiki = {m.metric: m for m in tasks["wiki"].metrics}
    assert tasks["wiki"].items == [80, 0, 80]
    assert wiki["perplexity"].values[1] is None and wiki["perplexity"].diffs[0].diff is None
    # nll rose by 0.5: lower is better, so that is significantly worse.
    assert not wiki["nll"].higher_is_better
    assert wiki["nll"].diffs[1].change == "worse" and wiki["nll"].diffs[1].ci.low > 0.4


def _speed(latency: np.ndarray) -> dict[str, Any]:
    """An efficiency-like task: per-item latency_s, reported percentiles (seconds)."""
    items = [{"id": f"p{i}", "scores": {"latency_s": float(x)}} for i, x in enumerate(latency)]
    metrics = {"latency_p50": float(np.percentile(latency, 50))}
    return {"metrics": metrics, "items": items}


def test_measured_tasks_are_untested_in_compare_but_gate_rules_naming_them_check_them(
    store: Store, base_f1: np.ndarray
) -> None:
    fast = np.random.default_rng(4).uniform(0.1, 0.2, N)
    slow = fast + 0.5  # every request half a second slower
    a = make_run(store, {"faq": _faq(base_f1), "speed": _speed(fast)}, measured=["speed"])
    b = make_run(
        store,
        {"faq": _faq(_shifted(base_f1, -0.2)), "speed": _speed(slow)},
        measured=["speed"],
    )
    tasks = {t.task: t for t in compare_runs(store, [a.ref, b.ref]).tasks}
    speed = {m.metric: m for m in tasks["speed"].metrics}
    assert set(speed) == {"latency_p50", "latency_s"}
    for row in speed.values():
        d = row.diffs[0]
        assert row.measured and d.ci is None and not d.significant and d.change == "untested"
    assert speed["latency_s"].diffs[0].diff == pytest.approx(0.5)
    faq = {m.metric: m for m in tasks["faq"].metrics}
    assert not faq["token_f1"].measured and faq["token_f1"].diffs[0].change == "worse"
    # The same numbers from runs that do not mark the task measured: a significant regression.
    c = make_run(store, {"speed": _speed(fast)})
    d = make_run(store, {"speed": _speed(slow)})
    (plain,) = compare_runs(store, [c.ref, d.ref]).tasks
    row = {m.metric: m for m in plain.metrics}["latency_s"]
    assert not row.measured and row.diffs[0].change == "worse"
    # A gate rule naming a measured metric checks it: the interval, and thresholds.
    rules = GateRules.model_validate(
        {
            "thresholds": {"speed.latency_p50": {"max": 0.5}},
            "no_regression": ["speed.latency_s"],
        }
    )
    verdict = gate(store, b.ref, a.ref, rules, save=False)
    checks = {ch.name: ch for ch in verdict.checks}
    reg = checks["no_regression speed.latency_s"]
    assert not reg.passed and reg.ci is not None and reg.ci.low > 0.45
    thr = checks["threshold speed.latency_p50"]
    assert not thr.passed and thr.value == pytest.approx(float(np.percentile(slow, 50)))
    assert gate(store, a.ref, a.ref, rules, save=False).passed


def _robust(drop: np.ndarray) -> dict[str, Any]:
    """A robustness-like task: per-item consistency and drop, per-kind drop reported."""
    items = [
        {"id": f"r{i}", "scores": {"consistency": 1.0 - float(x), "drop": float(x)}}
        for i, x in enumerate(drop)
    ]
    metrics = {"drop": float(drop.mean()), "drop.typo": float(drop.mean())}
    return {"metrics": metrics, "items": items}


def test_a_rise_in_robustness_drop_is_a_regression(store: Store) -> None:
    low = np.random.default_rng(6).uniform(0.0, 0.1, N)
    a = make_run(store, {"robust": _robust(low)})
    b = make_run(store, {"robust": _robust(low + 0.2)})
    rows = {m.metric: m for m in compare_runs(store, [a.ref, b.ref]).tasks[0].metrics}
    assert not rows["drop"].higher_is_better and not rows["drop.typo"].higher_is_better
    assert rows["drop"].diffs[0].diff == pytest.approx(0.2)
    assert rows["drop"].diffs[0].change == "worse"
    assert rows["consistency"].higher_is_better and rows["consistency"].diffs[0].change == "worse"
    # ... and the gate fails it; the reverse change passes.
    rules = GateRules.model_validate({"no_regression": ["robust.drop"]})
    assert not gate(store, b.ref, a.ref, rules, save=False).passed
    assert gate(store, a.ref, b.ref, rules, save=False).passed


def test_compare_falls_back_to_unpaired_when_no_item_matches(
    store: Store, base_f1: np.ndarray
) -> None:
    a = make_run(store, {"faq": _faq(base_f1)})
    b = make_run(store, {"faq": _faq(_shifted(base_f1, 0.2), [f"x{i}" for i in range(N)])})
    d = {m.metric: m for m in compare_runs(store, [a.ref, b.ref]).tasks[0].metrics}
    ci = d["token_f1"].diffs[0].ci
    assert ci is not None and not ci.paired and (ci.n_a, ci.n_b) == (N, N) and ci.significant


def test_compare_needs_two_known_runs(store: Store, base_f1: np.ndarray) -> None:
    a = make_run(store, {"faq": _faq(base_f1)})
    with pytest.raises(BadInputError, match="at least two"):
        compare_runs(store, [a.ref])
    with pytest.raises(NotFoundError, match="support-suite:v1"):
        compare_runs(store, [a.ref, f"{SUITE}:v9"])


# -- gate rules -----------------------------------------------------------------------------
RULES_YAML = """\
# luodi eval gate CANDIDATE --against production --rules gate.yaml
thresholds:
  faq.token_f1: {min: 0.3}
  wiki.perplexity: {max: 40}
no_regression:
  - faq.token_f1
  - {metric: wiki.nll, margin: 0.05}
"""


def test_load_gate_rules(tmp_path: Path) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text(RULES_YAML, encoding="utf-8")
    rules = load_gate_rules(path)
    assert rules.thresholds["faq.token_f1"].min == 0.3
    assert rules.thresholds["wiki.perplexity"].max == 40
    assert [(r.metric, r.margin) for r in rules.no_regression] == [
        ("faq.token_f1", None),
        ("wiki.nll", 0.05),
    ]
    text = gate_rules_yaml(rules)
    assert text.startswith("# luodi eval gate CANDIDATE --against production --rules gate.yaml")
    path.write_text(text, encoding="utf-8")
    assert load_gate_rules(path) == rules


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("thresholds: {faq.token_f1: {min: 0.3}}\nmax_drop: 1\n", "max_drop: Extra inputs"),
        ("thresholds: {faq.token_f1: {minimum: 0.3}}\n", "minimum: Extra inputs"),
        ("thresholds: {faq.token_f1: {}}\n", "give min, max or both"),
        ("thresholds: {faq.token_f1: {min: 0.9, max: 0.1}}\n", "above max"),
        ("no_regression: [{metric: faq.token_f1, margin: -1}]\n", "greater than or equal"),
        ("margin: 0.1\n", "no rules"),
        ("- faq.token_f1\n", "must be a mapping"),
        ("thresholds: [\n", "not valid YAML"),
    ],
)
def test_gate_rules_reject_bad_files(tmp_path: Path, body: str, error: str) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(BadInputError, match=error):
        load_gate_rules(path)


def test_gate_rules_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="does not exist"):
        load_gate_rules(tmp_path / "nope.yaml")


# -- gate -----------------------------------------------------------------------------------
def _rules(**kw: Any) -> GateRules:
    data = {
        "thresholds": {"faq.token_f1": {"min": 0.3}},
        "no_regression": ["faq.token_f1", "faq.exact_match"],
    }
    return GateRules.model_validate({**data, **kw})


def test_gate_fails_a_planted_regression_and_stores_the_verdict(
    store: Store, base_f1: np.ndarray
) -> None:
    right = np.random.default_rng(8).uniform(size=N) < 0.85
    # The candidate gets a quarter of the baseline's right answers wrong: accuracy −0.2.
    worse = right & (np.random.default_rng(9).uniform(size=N) > 0.25)
    prod = make_run(store, {"faq": _faq(base_f1), "tickets": _tickets(right.astype(float))})
    cand = make_run(
        store, {"faq": _faq(_shifted(base_f1, -0.2)), "tickets": _tickets(worse.astype(float))}
    )
    rules = _rules(no_regression=["faq.token_f1", "faq.exact_match", "tickets.accuracy"])
    verdict = gate(store, cand.ref, prod.ref, rules)
    assert not verdict.passed
    checks = {c.name: c for c in verdict.checks}
    acc = checks["no_regression tickets.accuracy"]
    assert not acc.passed and acc.ci.diff == pytest.approx(worse.mean() - right.mean())
    assert acc.ci.high < 0
    assert checks["complete"].passed
    assert checks["threshold faq.token_f1"].passed  # still above 0.3 ...
    reg = checks["no_regression faq.token_f1"]
    assert not reg.passed and reg.ci is not None and reg.ci.high < -0.15  # ... but much worse
    assert "200 paired items" in reg.detail
    # Stored: an eval_gate artifact whose parents are the two runs, verdict in its meta.
    assert verdict.ref == f"{SUITE}:v1"
    art = store.resolve(verdict.ref, EVAL_GATE)
    assert {(p.ref, p.role) for p in art.parents} == {
        (cand.ref, "candidate"),
        (prod.ref, "baseline"),
    }
    assert art.meta["passed"] is False and art.meta["candidate"] == cand.ref
    assert json.loads((art.path / "verdict.json").read_text(encoding="utf-8"))["passed"] is False
    assert (art.path / "rules.yaml").read_text(encoding="utf-8").startswith("# luodi eval gate")


def test_gate_passes_an_improvement(store: Store, base_f1: np.ndarray) -> None:
    right = np.random.default_rng(8).uniform(size=N) < 0.6
    better = right | (np.random.default_rng(9).uniform(size=N) < 0.5)
    prod = make_run(store, {"faq": _faq(base_f1), "tickets": _tickets(right.astype(float))})
    cand = make_run(
        store, {"faq": _faq(_shifted(base_f1, 0.2)), "tickets": _tickets(better.astype(float))}
    )
    rules = _rules(no_regression=["faq.token_f1", "faq.exact_match", "tickets.accuracy"])
    verdict = gate(store, cand.ref, prod.ref, rules, save=False)
    assert verdict.passed and all(c.passed for c in verdict.checks)
    assert {c.name: c for c in verdict.checks}["no_regression tickets.accuracy"].ci.low > 0
    # The same two runs the other way round: the regression is caught.
    assert not gate(store, prod.ref, cand.ref, rules, save=False).passed
    assert verdict.ref is None and store.list(EVAL_GATE) == []
    # An identical rerun is no regression either.
    assert gate(store, prod.ref, prod.ref, _rules(), save=False).passed


def test_gate_thresholds_min_and_max(store: Store, base_f1: np.ndarray) -> None:
    nll = np.random.default_rng(5).normal(3.0, 0.2, 60)  # perplexity ≈ e^3 ≈ 20
    run = make_run(store, {"faq": _faq(base_f1), "wiki": _wiki(nll)})
    ppl = float(np.exp(nll.mean()))
    ok = GateRules(
        thresholds={"faq.token_f1": {"min": 0.4, "max": 0.6}, "wiki.perplexity": {"max": 25}}
    )
    verdict = gate(store, run.ref, run.ref, ok, save=False)
    assert verdict.passed
    assert verdict.checks[2].value == pytest.approx(ppl)
    bad = GateRules(thresholds={"faq.token_f1": {"min": 0.9}, "wiki.perplexity": {"max": 10}})
    checks = {c.name: c for c in gate(store, run.ref, run.ref, bad, save=False).checks}
    assert "below min 0.9" in checks["threshold faq.token_f1"].detail
    assert "above max 10" in checks["threshold wiki.perplexity"].detail
    assert not checks["threshold faq.token_f1"].passed
    assert not checks["threshold wiki.perplexity"].passed


def test_gate_regression_direction_and_margin(store: Store, base_f1: np.ndarray) -> None:
    nll = np.random.default_rng(5).normal(3.0, 0.2, 120)
    prod = make_run(store, {"faq": _faq(base_f1), "wiki": _wiki(nll)})
    small_drop = _shifted(base_f1, -0.03, seed=9)  # significant but small
    cand = make_run(store, {"faq": _faq(small_drop), "wiki": _wiki(nll - 0.3)})
    strict = GateRules(no_regression=["faq.token_f1", "wiki.nll"])
    checks = {c.name: c for c in gate(store, cand.ref, prod.ref, strict, save=False).checks}
    assert not checks["no_regression faq.token_f1"].passed
    assert checks["no_regression wiki.nll"].passed  # nll fell: better for a cost
    lenient = GateRules(no_regression=[{"metric": "faq.token_f1", "margin": 0.05}])
    assert gate(store, cand.ref, prod.ref, lenient, save=False).passed
    # Swapped roles: the nll rose by 0.3 → a regression for a lower-is-better metric.
    back = gate(store, prod.ref, cand.ref, GateRules(no_regression=["wiki.nll"]), save=False)
    assert not back.passed


def test_gate_without_per_item_scores_compares_point_values(
    store: Store, base_f1: np.ndarray
) -> None:
    prod = make_run(store, {"faq": _faq(base_f1, bleu=30.0)})
    cand = make_run(store, {"faq": _faq(base_f1, bleu=28.0)})
    rules = GateRules(no_regression=["faq.bleu"])
    (check,) = gate(store, cand.ref, prod.ref, rules, save=False).checks[1:]
    assert not check.passed and check.ci is None and "point values" in check.detail
    rules = GateRules(no_regression=["faq.bleu"], margin=2.5)
    assert gate(store, cand.ref, prod.ref, rules, save=False).passed


def test_gate_names_the_metrics_that_exist(store: Store, base_f1: np.ndarray) -> None:
    correct = (np.random.default_rng(0).uniform(size=50) < 0.7).astype(float)
    run = make_run(store, {"faq": _faq(base_f1), "tickets": _tickets(correct)})
    with pytest.raises(BadInputError, match=r"faq\.rouge_l.*faq\.bleu, faq\.exact_match"):
        gate(store, run.ref, run.ref, GateRules(no_regression=["faq.rouge_l"]))
    with pytest.raises(BadInputError, match="tickets.per_class.账单.f1"):
        gate(store, run.ref, run.ref, GateRules(thresholds={"faq": {"min": 0}}))
    assert store.list(EVAL_GATE) == []  # nothing stored for a bad rule
    # Nested metrics are addressable with dots; the confusion matrix is not a metric.
    rules = GateRules(thresholds={"tickets.per_class.账单.f1": {"min": 0.5}})
    assert gate(store, run.ref, run.ref, rules, save=False).passed
    with pytest.raises(BadInputError, match="confusion_matrix"):
        gate(
            store, run.ref, run.ref, GateRules(thresholds={"tickets.confusion_matrix": {"min": 0}})
        )


def test_gate_fails_a_partial_run(store: Store, base_f1: np.ndarray) -> None:
    prod = make_run(store, {"faq": _faq(base_f1)})
    cand = make_run(store, {"faq": _faq(_shifted(base_f1, 0.2))}, status="partial")
    verdict = gate(store, cand.ref, prod.ref, _rules(), save=False)
    assert not verdict.passed
    assert [c.name for c in verdict.checks if not c.passed] == ["complete"]
    assert gate(store, cand.ref, prod.ref, _rules(require_complete=False), save=False).passed


def test_gate_against_production_finds_the_production_models_run(
    store: Store, base_f1: np.ndarray
) -> None:
    v1, v2 = make_model(store), make_model(store)
    set_stage(store, v1.ref, "production")
    prod_run = make_run(store, {"faq": _faq(base_f1)}, target=v1)
    make_run(store, {"faq": _faq(base_f1)}, suite="other-suite", target=v1)  # not our suite
    cand_run = make_run(store, {"faq": _faq(_shifted(base_f1, -0.2))}, target=v2)
    verdict = gate(store, cand_run.ref, "production", _rules())
    assert verdict.against == prod_run.ref and not verdict.passed
    assert resolve_eval_run(store, "客服模型@production", like=cand_run) == prod_run
    assert resolve_eval_run(store, v2.ref) == cand_run  # a model version: its newest run
    cmp = compare_runs(store, ["客服模型@production", cand_run.ref])
    # The newest run on v1 is of another suite; the eval run named alongside fixes the suite.
    assert [r.ref for r in cmp.runs] == [prod_run.ref, cand_run.ref]
    assert [r.target for r in cmp.runs] == [v1.ref, v2.ref]
    v3 = make_model(store)
    set_stage(store, v3.ref, "staging")  # no eval run targets v3 yet
    with pytest.raises(NotFoundError, match="no eval run of suite 'support-suite' targets"):
        gate(store, cand_run.ref, "staging", _rules())
    set_stage(store, v2.ref, "production")  # v1 archived, v3 staging: no candidate left
    with pytest.raises(NotFoundError, match="no version of model '客服模型' is in candidate"):
        resolve_eval_run(store, "candidate", like=cand_run)
    assert store.list(EVAL_GATE)[0].meta["against"] == prod_run.ref  # the one verdict stored


def test_gate_against_production_needs_a_registered_target(
    store: Store, base_f1: np.ndarray
) -> None:
    run = make_run(store, {"faq": _faq(base_f1)})  # an endpoint URL target, no model parent
    with pytest.raises(BadInputError, match="does not target a registered model version"):
        gate(store, run.ref, "production", _rules())


def test_items_without_or_with_duplicate_ids_are_counted_not_paired(
    store: Store, base_f1: np.ndarray
) -> None:
    a = make_run(store, {"faq": _faq(base_f1)})
    task = _faq(_shifted(base_f1, 0.2))
    task["items"][0]["id"] = None  # q000 unidentifiable
    task["items"][2]["id"] = "q001"  # q001 twice: neither copy can be matched
    b = make_run(store, {"faq": task})
    (cmp_task,) = compare_runs(store, [a.ref, b.ref]).tasks
    pair = cmp_task.pairs[0]
    assert (pair.matched, pair.only_in_first, pair.unusable) == (N - 3, 3, 3)
    ci = next(m for m in cmp_task.metrics if m.metric == "token_f1").diffs[0].ci
    assert ci is not None and ci.n_a == N - 3


def test_unreadable_results_are_bad_input(store: Store) -> None:
    with store.create("eval_run", SUITE, meta={"status": "complete"}) as d:
        (d.path / "results.json").write_text("{not json", encoding="utf-8")
    with store.create("eval_run", SUITE, meta={"status": "complete"}) as d:
        (d.path / "results.json").write_text('{"runs": []}', encoding="utf-8")
    with pytest.raises(BadInputError, match=r"support-suite:v1: cannot read"):
        compare_runs(store, [f"{SUITE}:v1", f"{SUITE}:v2"])
    with pytest.raises(BadInputError, match=r"support-suite:v2: .* has no `tasks` mapping"):
        compare_runs(store, [f"{SUITE}:v2", f"{SUITE}:v2"])


def test_cli_compare_marks_measured_metrics(store: Store, tmp_path: Path) -> None:
    fast = np.random.default_rng(4).uniform(0.1, 0.2, 40)
    a = make_run(store, {"speed": _speed(fast)}, measured=["speed"])
    b = make_run(store, {"speed": _speed(fast + 0.5)}, measured=["speed"])
    out = run_cli("eval", "compare", a.ref, b.ref, home=tmp_path / "home").stdout
    assert "latency_s ~" in out and "latency_p50 ~" in out and "~ measured" in out
    table = out.split("* significant")[0]
    assert "+0.5" in table and "▼" not in table and "*" not in table  # no interval, no verdict
