"""The eval report: a self-contained HTML page and the same content as JSON, built from runs
scored by hand-written fake targets (answers known in advance), compared with bootstrap CIs,
written through `luodi eval report` too."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix

from luodi.config import Settings
from luodi.errors import NotFoundError
from luodi.eval import GenerationParams, parse_suite, run_eval
from luodi.eval import metrics as M
from luodi.eval.compare import compare_runs
from luodi.eval.report import best_worst, build_report, report_data
from luodi.eval.report_html import fmt
from luodi.eval.runner import KIND, load_results, resolve_run
from luodi.eval.targets import Prompt, TargetError, Unsupported
from luodi.store import Store
from tests.eval.test_tasks import choice_rows, labeled, qa_dataset
from tests.helpers import run_cli

CHOICE = [
    ("Which planet is red?", ["Venus", "Mars", "Jupiter", "Saturn"], "B", "science"),
    ("中国的首都是哪里？", ["上海", "北京", "广州", "深圳"], "B", "地理"),
    ("Which ocean is largest?", ["Atlantic", "Indian", "Arctic", "Pacific"], "D", "地理"),
    ("What do bees make?", ["honey", "silk", "wool", "milk"], "A", "science"),
    ("What is 7 times 6?", ["36", "42", "48", "54"], "B", "science"),
    ("一年有几个月？", ["十", "十二", "十一", "九"], "B", "地理"),
]
QA = [
    ("What are the office hours?", "Monday to Friday, 9am to 6pm."),
    ("年假有多少天？", "入职满一年后每年十五天年假。"),
    ("Where is the VPN guide?", "On the intranet under IT."),
    ("报销需要什么材料？", "发票原件和审批单。"),
    ("Who approves travel?", "Your manager approves travel."),
    ("食堂几点开门？", "早上七点半开门。"),
]
TICKETS = [
    ("My invoice is wrong", "billing"),
    ("I was charged twice", "billing"),
    ("The app crashes on start", "bug"),
    ("Button does nothing", "bug"),
    ("How do I export data?", "question"),
    ("Where is the manual?", "question"),
]


class FakeTarget(Unsupported):
    """Answers from tables: a reply per question, a letter per choice question (the option
    gets log-likelihood 0, the others -1), a label per text. `fail_on` raises TargetError
    when a generation batch contains that question (a server dying mid-run)."""

    def __init__(
        self,
        ref: str,
        replies: dict[str, str],
        letters: dict[str, str],
        labels: dict[str, str],
        fail_on: str | None = None,
    ) -> None:
        self.ref, self.replies, self.letters, self.labels = ref, replies, letters, labels
        self.fail_on = fail_on
        self.artifact = None
        self.capabilities = frozenset({"generate", "chat_loglikelihood", "classify"})

    def describe(self) -> dict[str, Any]:
        return {"kind": "fake", "ref": self.ref, "content_hash": None}

    @staticmethod
    def _question(prompt: Prompt) -> str:
        return prompt if isinstance(prompt, str) else prompt[-1]["content"]

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[str]:
        qs = [self._question(p) for p in prompts]
        if self.fail_on is not None and self.fail_on in qs:
            raise TargetError("upstream closed the connection")
        return [self.replies[q] for q in qs]

    def loglikelihood(
        self, contexts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[float]:
        out = []
        for ctx, cont in zip(contexts, continuations, strict=True):
            question = self._question(ctx).split("\n")[0]
            out.append(0.0 if self.letters[question] == cont else -1.0)
        return out

    def classify(self, texts: Sequence[str]) -> list[str]:
        return [self.labels[t] for t in texts]


SUITE = {
    "name": "report-suite",
    "tasks": [
        {"task": "choice", "dataset": "mc"},
        {"task": "generate", "dataset": "faq", "batch_size": 2},
        {"task": "classify", "dataset": "tickets"},
    ],
}

GOOD_REPLIES = {q: a for q, a in QA}
# Worse replies, each with a hand-checked token F1 against its reference.
BAD_REPLIES = {
    QA[0][0]: "Monday to Friday.",  # 3 of 3 predicted tokens right, 3 of 6 reference: F1 2/3
    QA[1][0]: "十五天。",  # 3 of 3 right, 3 of 13 reference characters: F1 3/8
    QA[2][0]: "No idea.",  # F1 0
    QA[3][0]: "发票原件和审批单。",  # exact
    QA[4][0]: "Your manager.",  # 2 of 2, 2 of 4: F1 2/3
    QA[5][0]: "不知道",  # F1 0
}
F1_BAD = {0: 2 / 3, 1: 3 / 8, 2: 0.0, 3: 1.0, 4: 2 / 3, 5: 0.0}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Path, str, str]]:
    """(store, home, baseline run, candidate run): the candidate is worse everywhere and its
    generate task is partial (the fake server fails on the last batch)."""
    home = tmp_path_factory.mktemp("report-home")
    store = Store(Settings(home=home))
    rows = choice_rows(CHOICE)
    rows.append(
        {"text": "Broken?", "label": "A", "meta": {"A": "x", "B": "y"}, "location": "row 9"}
    )
    labeled(store, "mc", rows)
    qa_dataset(store, "faq", QA)
    labeled(store, "tickets", [{"text": t, "label": lab} for t, lab in TICKETS])
    suite = parse_suite(SUITE)
    right = {q: a for q, _, a, _ in CHOICE}
    good = FakeTarget("fake:good", GOOD_REPLIES, right, dict(TICKETS))
    base = run_eval(store, good, suite).run
    wrong = dict(right) | {CHOICE[0][0]: "A", CHOICE[1][0]: "C", CHOICE[2][0]: "A"}
    labels = dict(TICKETS) | {TICKETS[0][0]: "bug", TICKETS[4][0]: "billing"}
    bad = FakeTarget("fake:bad", BAD_REPLIES, wrong, labels, fail_on=QA[4][0])
    cand = run_eval(store, bad, suite).run
    yield store, home, base, cand
    store.close()


IMG = re.compile(r"<img\b[^>]*\bsrc=\"([^\"]*)\"")


def test_html_is_self_contained_and_shows_the_json(
    runs: tuple[Store, Path, str, str], tmp_path: Path
) -> None:
    store, _, base, cand = runs
    res = build_report(store, cand, [base], tmp_path / "out" / "r.html")
    page = Path(res.path).read_text(encoding="utf-8")
    data = json.loads(Path(res.json_path).read_text(encoding="utf-8"))
    assert res.json_path == str(tmp_path / "out" / "r.json")
    assert data == json.loads(json.dumps(report_data(store, cand, [base]), default=str))
    # Nothing fetched from anywhere: no scripts, no stylesheets, no remote src/href.
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", page, re.I)
    assert "<script" not in page.lower() and "<link" not in page.lower()
    images = IMG.findall(page)
    assert images and all(s.startswith("data:image/png;base64,") for s in images)
    # Header: target, suite, dataset versions, seed, libraries, the partial mark.
    body = load_results(resolve_run(store, cand))
    assert data["status"] == body["status"] == "partial"
    assert "PARTIAL" in page and "fake:bad" in page
    for label, ds in data["datasets"].items():
        assert ds["dataset"] == body["tasks"][label]["dataset"]
        assert html.escape(ds["dataset"]) in page and ds["content_hash"][:16] in page
    assert data["libraries"]["numpy"] == np.__version__ and np.__version__ in page
    # Every metric is the stored one and is on the page as formatted.
    for task in data["tasks"]:
        assert task["metrics"] == body["tasks"][task["name"]]["metrics"]
        for value in task["metrics"].values():
            assert fmt(value) in page
    # Items are shown with their texts (Chinese included), escaped.
    for task in data["tasks"]:
        for it in task["best"] + task["worst"]:
            for field in ("input", "reference", "prediction"):
                assert html.escape(str(it[field]), quote=True) in page
    assert "中国的首都是哪里？" in page
    # The problem row and the reason the generate task is partial.
    choice = next(t for t in data["tasks"] if t["name"] == "choice")
    assert choice["problems"]["skipped"] == 1 and choice["problems"]["rows"][0]["location"] == (
        "row 9"
    )
    assert "missing option(s) C, D" in page
    gen = next(t for t in data["tasks"] if t["name"] == "generate")
    assert gen["status"] == "partial" and "upstream closed the connection" in page


def test_best_and_worst_items_follow_the_main_score(runs: tuple[Store, Path, str, str]) -> None:
    store, _, _, cand = runs
    data = report_data(store, cand)
    gen = next(t for t in data["tasks"] if t["name"] == "generate")
    # Batches of 2; the batch holding QA[4] failed, so items 0-3 were scored.
    assert gen["counts"]["scored"] == 4 and gen["main_score"] == "token_f1"
    assert [it["score"] for it in gen["best"]] == pytest.approx([1.0, 2 / 3, 3 / 8])
    assert [it["input"] for it in gen["best"]] == [QA[3][0], QA[0][0], QA[1][0]]
    assert [it["input"] for it in gen["worst"]] == [QA[2][0]]  # never both best and worst
    for it in gen["best"] + gen["worst"]:
        i = [q for q, _ in QA].index(it["input"])
        assert it["score"] == pytest.approx(F1_BAD[i])
        assert it["score"] == M.token_f1(BAD_REPLIES[QA[i][0]], QA[i][1])
    choice = next(t for t in data["tasks"] if t["name"] == "choice")
    assert choice["main_score"] == "accuracy"
    assert [it["score"] for it in choice["best"]] == [1.0, 1.0, 1.0]
    assert [it["input"].split("\n")[0] for it in choice["worst"]] == [q for q, *_ in CHOICE[:3]]
    # A cost (lower is better) ranks the other way round.
    items = [{"id": str(i), "scores": {"nll": v}} for i, v in enumerate([2.0, 0.5, 9.0, 1.0])]
    best, worst = best_worst(items, "nll", 2)
    assert [b["id"] for b in best] == ["1", "3"] and [w["id"] for w in worst] == ["2", "0"]
    # One wrong answer in six: the worst list holds it alone; all equal: no worst list.
    binary = [{"id": str(i), "scores": {"accuracy": float(i != 4)}} for i in range(6)]
    best, worst = best_worst(binary, "accuracy", 3)
    assert [b["id"] for b in best] == ["0", "1", "2"] and [w["id"] for w in worst] == ["4"]
    same = [{"id": str(i), "scores": {"accuracy": 0.0}} for i in range(5)]
    assert [[b["id"] for b in part] for part in best_worst(same, "accuracy", 3)] == [
        ["0", "1", "2"],
        [],
    ]


def test_confusion_matrix_matches_scikit_learn(runs: tuple[Store, Path, str, str]) -> None:
    store, _, _, cand = runs
    data = report_data(store, cand)
    cls = next(t for t in data["tasks"] if t["name"] == "classify")
    items = load_results(resolve_run(store, cand))["tasks"]["classify"]["items"]
    y_true = [it["reference"] for it in items]
    y_pred = [it["prediction"] for it in items]
    labels = cls["confusion"]["labels"]
    assert labels == ["billing", "bug", "question"]
    expected = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    assert cls["confusion"]["matrix"] == expected == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_comparison_has_differences_and_intervals(
    runs: tuple[Store, Path, str, str], tmp_path: Path
) -> None:
    store, _, base, cand = runs
    res = build_report(store, cand, [base], tmp_path / "c.html")
    page = Path(res.path).read_text(encoding="utf-8")
    (cmp,) = report_data(store, cand, [base])["comparisons"]
    assert cmp == compare_runs(store, [base, cand]).model_dump(mode="json")
    assert res.against == [base] and f"Compared with {base}" in page
    rows = {(t["task"], m["metric"]): m for t in cmp["tasks"] for m in t["metrics"]}
    acc = rows[("choice", "accuracy")]
    # 3 of 6 answers went wrong: -0.5, paired over the same 6 items.
    assert acc["diffs"][0]["diff"] == pytest.approx(-0.5)
    ci = acc["diffs"][0]["ci"]
    assert ci["paired"] and ci["low"] <= -0.5 <= ci["high"] and ci["high"] < 0
    assert acc["diffs"][0]["significant"] and acc["diffs"][0]["change"] == "worse"
    for m in rows.values():
        d = m["diffs"][0]
        assert fmt(d["diff"]) in page
        if d["ci"]:
            assert f"[{fmt(d['ci']['low'])}, {fmt(d['ci']['high'])}]" in page
    assert "95% CI" in page


def test_latency_histogram_from_items_with_timings(store: Store, tmp_path: Path) -> None:
    latencies = [0.12, 0.35, 0.2, 1.5, 0.4, 0.25, 0.3, 0.9]
    ttfts = [v / 4 for v in latencies]
    items = [
        {"id": f"p{i}", "input": f"prompt {i}", "latency_s": v, "ttft_s": t, "scores": {}}
        for i, (v, t) in enumerate(zip(latencies, ttfts, strict=True))
    ]
    items.append({"id": "broken", "latency_s": None, "scores": {}})
    body = {
        "suite": "speed",
        "target": "x",
        "status": "complete",
        "tasks": {
            "efficiency": {
                "task": "efficiency",
                "dataset": "faq:v1",
                "split": None,
                "status": "complete",
                "metrics": {"latency_p50": float(np.percentile(latencies, 50))},
                "counts": {"records": 9, "scored": 9},
                "items": items,
            }
        },
    }
    with store.create(KIND, "speed", meta={"suite": "speed", "status": "complete"}) as draft:
        (draft.path / "results.json").write_text(json.dumps(body), encoding="utf-8")
    res = build_report(store, "speed", out=tmp_path / "speed.html")
    data = json.loads(Path(res.json_path).read_text(encoding="utf-8"))
    timing = data["tasks"][0]["timings"]
    assert timing["latency_s"]["values"] == latencies and timing["latency_s"]["n"] == 8
    assert timing["latency_s"]["p95"] == pytest.approx(float(np.percentile(latencies, 95)))
    assert timing["ttft_s"]["p50"] == pytest.approx(float(np.percentile(ttfts, 50)))
    page = Path(res.path).read_text(encoding="utf-8")
    assert "<h3>Latency</h3>" in page and 'alt="latency_s histogram"' in page
    assert fmt(timing["latency_s"]["p95"]) in page
    assert data["tasks"][0]["main_score"] is None  # no per-item score: no best/worst lists


def test_default_output_in_working_directory_and_unknown_run(
    runs: tuple[Store, Path, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _, base, _ = runs
    monkeypatch.chdir(tmp_path)
    res = build_report(store, base)
    assert Path(res.path) == tmp_path / "report-suite-v1-report.html"
    assert Path(res.json_path).is_file()
    before = sorted(p.name for p in resolve_run(store, base).path.iterdir())
    assert "report" not in " ".join(before)  # the registered folder is left alone
    with pytest.raises(NotFoundError):
        build_report(store, "no-such-suite")


def test_cli_report(runs: tuple[Store, Path, str, str], tmp_path: Path) -> None:
    store, home, base, cand = runs
    out = tmp_path / "cli.html"
    proc = run_cli(
        "eval", "report", cand, "--against", base, "--out", str(out), "--json", home=home
    )
    printed = json.loads(proc.stdout)
    assert printed["path"] == str(out) and printed["against"] == [base]
    data = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert data == json.loads(json.dumps(report_data(store, cand, [base]), default=str))
    in_process = build_report(store, cand, [base], tmp_path / "same.html")
    assert out.read_text(encoding="utf-8") == Path(in_process.path).read_text(encoding="utf-8")
    missing = run_cli("eval", "report", "nope", home=home, check=False)
    assert missing.returncode == 2 and "nope" in missing.stderr


def _stored_run(store: Store, latencies: list[float], refused: list[bool]) -> str:
    """A run of an efficiency task (items scored as the task scores them) and a safety task
    without a dataset, stored as the runner stores them."""
    speed = [
        {"id": f"q{i}", "ttft_s": v / 4, "latency_s": v,
         "scores": {"ttft_s": v / 4, "latency_s": v, "tokens_per_s": 10 / v}}
        for i, v in enumerate(latencies)
    ]  # fmt: skip
    safety = [
        {"id": f"redteam:p{i}", "input": f"prompt {i}", "prediction": "…",
         "scores": {"refusal_rate": float(r)}}
        for i, r in enumerate(refused)
    ]  # fmt: skip
    counts = {"records": len(latencies), "scored": len(latencies)}
    body = {
        "suite": "checks",
        "target": "x",
        "status": "complete",
        "tasks": {
            "efficiency": {
                "task": "efficiency",
                "dataset": "faq:v1",
                "split": None,
                "status": "complete",
                "metrics": {"latency_p50": float(np.percentile(latencies, 50))},
                "counts": counts,
                "items": speed,
            },
            "safety": {
                "task": "safety",
                "dataset": None,
                "split": None,
                "status": "complete",
                "metrics": {"refusal_rate": float(np.mean(refused))},
                "counts": {"records": 0, "scored": len(refused)},
                "items": safety,
            },
        },
    }
    meta = {"suite": "checks", "status": "complete", "measured_tasks": ["efficiency"]}
    with store.create(KIND, "checks", meta=meta) as draft:
        (draft.path / "results.json").write_text(json.dumps(body), encoding="utf-8")
    assert draft.artifact is not None
    return draft.artifact.ref


def test_measured_task_and_built_in_prompts_in_the_report(store: Store, tmp_path: Path) -> None:
    fast = [0.3, 0.1, 0.2, 0.4, 0.25, 0.15, 0.35, 0.05]
    base = _stored_run(store, fast, [True] * 4 + [False] * 4)
    run = _stored_run(store, [v + 1.0 for v in fast], [True] * 8)
    res = build_report(store, run, [base], out=tmp_path / "checks.html")
    data = json.loads(Path(res.json_path).read_text(encoding="utf-8"))
    eff, safety = data["tasks"]
    # Efficiency items rank by latency (its main score), fastest first, not by ttft_s, the
    # first score of each item.
    assert eff["main_score"] == "latency_s" and eff["higher_is_better"] is False
    assert [it["id"] for it in eff["best"]] == ["q7", "q1", "q5"]
    assert safety["main_score"] == "refusal_rate" and safety["dataset"] is None
    (cmp,) = data["comparisons"]
    rows = {(t["task"], m["metric"]): m for t in cmp["tasks"] for m in t["metrics"]}
    lat = rows[("efficiency", "latency_s")]
    assert lat["measured"] and lat["diffs"][0]["ci"] is None
    assert lat["diffs"][0]["diff"] == pytest.approx(1.0)
    refusal = rows[("safety", "refusal_rate")]
    assert not refusal["measured"] and refusal["diffs"][0]["change"] == "better"
    page = Path(res.path).read_text(encoding="utf-8")
    assert page.count('<span class="measured">measured</span>') == 4  # 4 efficiency metrics
    assert "built-in" in page and ">None<" not in page
