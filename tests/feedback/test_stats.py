"""`luodi feedback stats`: per-version figures against hand counts, failing topics as clusters."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from luodi.feedback import feedback_stats
from luodi.feedback.source import parse_since
from luodi.store import Store
from tests.feedback.seed import NOW, Seed, deployment, model_version
from tests.helpers import run_cli

PRINTER = [
    "My printer jams every time I print",
    "The printer paper gets stuck inside",
    "Printer shows a paper jam error",
    "Paper jam in the office printer again",
]
PASSWORD = [
    "I cannot reset my password",
    "The password reset link does not work",
    "How do I change my login password?",
    "Forgot my password and the reset fails",
]


def seed(store: Store) -> tuple[str, str]:
    v1, v2 = model_version(store).ref, model_version(store).ref
    deployment(store)
    s = Seed()
    # v1: 3 negatives, a positive, one changed from 0 to 1, one unrated, one correction only
    s.add("a1", v1, PRINTER[0], "Turn it off.", rating=0.0)
    s.add("a2", v1, PRINTER[1], "Buy a new one.", rating=0.0)
    s.add("b1", v1, PASSWORD[0], "No idea.", rating=0.0)
    s.add("p1", v1, "What time does the cafeteria open?", "At 8.", rating=1.0)
    s.add("x", v1, "How do I print double-sided?", "Use duplex.", rating=0.0)
    s.feedback.append({**s.feedback[-1], "rating": 1.0, "at": NOW - timedelta(minutes=5)})
    s.add("u", v1, "Hello", "Hi!")
    s.add("c", v1, "Where is building 3?", "North.", correction="South of the canteen.")
    # v2: 5 negatives (one 2-star), two positives (one asks about paper jams too)
    s.add("a3", v2, PRINTER[2], "Restart.", rating=0.0)
    s.add("a4", v2, PRINTER[3], "Ignore it.", rating=0.25)
    s.add("b2", v2, PASSWORD[1], "Try later.", rating=0.0)
    s.add("b3", v2, PASSWORD[2], "Ask IT.", rating=0.0)
    s.add("b4", v2, PASSWORD[3], "Hmm.", rating=0.0)
    s.add("p2", v2, "Printer paper jam again", "Open tray 2 and pull the sheet.", rating=0.75)
    s.add("p3", v2, "Is parking free?", "Yes.", rating=1.0)
    # outside the period: counted neither as requests nor as feedback
    s.add("old", v2, PASSWORD[0], "No.", rating=0.0, ago=timedelta(days=40))
    s.write(store)
    return v1, v2


@pytest.mark.parametrize("any_store", ["sqlite", "postgresql"], indirect=True)
def test_per_version_hand_counts(any_store: Store) -> None:
    v1, v2 = seed(any_store)
    rep = feedback_stats(any_store, since=parse_since("7d"), embedder=None)
    rows = {r.group: r for r in rep.rows}
    assert set(rows) == {v1, v2}
    a, b = rows[v1], rows[v2]
    assert (a.requests, a.feedback, a.rated, a.thumbs_down, a.corrections) == (7, 7, 5, 3, 1)
    assert a.thumbs_down_rate == pytest.approx(3 / 5)
    assert a.mean_rating == pytest.approx((0 + 0 + 0 + 1 + 1) / 5)  # x's latest rating is 1
    assert (b.requests, b.feedback, b.rated, b.thumbs_down, b.corrections) == (7, 7, 7, 5, 0)
    assert b.thumbs_down_rate == pytest.approx(5 / 7)
    assert b.mean_rating == pytest.approx((0.25 + 0.75 + 1) / 7)
    assert (rep.total.requests, rep.total.rated, rep.total.thumbs_down) == (14, 12, 8)
    assert rep.topics == [] and rep.embedder is None
    all_time = feedback_stats(any_store, by="deployment", embedder=None)
    assert [(r.group, r.requests, r.thumbs_down) for r in all_time.rows] == [("helpdesk", 15, 9)]


def test_stats_cli_topics(store: Store, tmp_path: Path) -> None:
    v1, v2 = seed(store)
    args = ["feedback", "stats", "--since", "7d", "--embedder", "minilm", "--json"]
    rep = json.loads(run_cli(*args, home=tmp_path / "home").stdout)
    assert {r["group"]: r["thumbs_down"] for r in rep["rows"]} == {v1: 3, v2: 5}
    topics = rep["topics"]
    assert len(topics) == 2  # two clear topics among the 8 negatives
    by_kind = {("printer" if set(t["examples"]) <= set(PRINTER) else "password"): t for t in topics}
    printer, password = by_kind["printer"], by_kind["password"]
    assert set(password["examples"]) <= set(PASSWORD) and len(password["examples"]) == 3
    assert (printer["size"], password["size"]) == (4, 4)
    assert printer["model_versions"] == {v1: 2, v2: 2}
    assert password["model_versions"] == {v1: 1, v2: 3}
    # the well-rated paper-jam question falls in the printer topic: 4 of 5 rated are negative
    assert (printer["rated"], printer["negative_rate"]) == (5, pytest.approx(0.8))
    assert (password["rated"], password["negative_rate"]) == (4, 1.0)
    table = run_cli(
        "feedback", "stats", "--since", "7d", "--no-topics",
        home=tmp_path / "home", env={"COLUMNS": "200"},
    )  # fmt: skip
    assert v1 in table.stdout and "60.0%" in table.stdout
    bad = run_cli("feedback", "stats", "--by", "colour", home=tmp_path / "home", check=False)
    assert bad.returncode == 2 and "--by" in bad.stderr
