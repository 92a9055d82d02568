"""`luodi monitor …` through the real command: exit codes of `check`, the signals table as
JSON, and the report page (self-contained, with the ROI numbers)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from luodi.config import Settings
from luodi.store import Store
from tests.helpers import run_cli, save_qa
from tests.monitor.seed import Seeded, standard

HEADER = "# luodi monitor check --rules rules.yaml\n"


@pytest.fixture
def home(tmp_path: Path) -> tuple[Path, Seeded]:
    h = tmp_path / "home"
    store = Store(Settings(home=h))
    seeded = standard(store, datetime.now(UTC))
    save_qa(store, [("How do I reset my VPN password?", "Use the portal.")], name="faq")
    store.close()
    return h, seeded


def _rules(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "rules.yaml"
    p.write_text(HEADER + text, encoding="utf-8")
    return p


def test_check_exit_codes(home: tuple[Path, Seeded], tmp_path: Path) -> None:
    h, _ = home
    ok = _rules(
        tmp_path,
        "rules:\n  - {name: errors, metric: error_rate, op: '>', value: 0.5, "
        "deployment: support}\n",
    )
    proc = run_cli("monitor", "check", "--rules", str(ok), home=h)
    assert "errors" in proc.stdout and "ok" in proc.stdout

    bad = _rules(
        tmp_path,
        "rules:\n  - {name: errors, metric: error_rate, op: '>', value: 0.1, "
        "deployment: support, window: 1h, min_requests: 10}\n"
        "  - {name: slow, metric: latency_p95_ms, op: '>', value: 10000}\n",
    )
    proc = run_cli("monitor", "check", "--rules", str(bad), home=h, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "BREACHED: error_rate = 0.1333" in proc.stderr and "slow" not in proc.stderr
    proc = run_cli("monitor", "check", "--rules", str(bad), "--json", home=h, check=False)
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert [(r["name"], r["breached"]) for r in data["results"]] == [
        ("errors", True),
        ("slow", False),
    ]
    assert data["results"][0]["requests"] == 15

    wrong = _rules(tmp_path, "rules:\n  - {name: x, metric: errs, op: '>', value: 1}\n")
    proc = run_cli("monitor", "check", "--rules", str(wrong), home=h, check=False)
    assert proc.returncode == 2
    assert "rule 'x'.metric: unknown metric 'errs'; valid metrics:" in proc.stderr
    proc = run_cli("monitor", "check", "--rules", str(tmp_path / "no.yaml"), home=h, check=False)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    # a rule that cannot be measured (no such knowledge base) is bad input too
    kb = _rules(
        tmp_path, "rules:\n  - {name: ood, metric: ood_rate, op: '>', value: 0.5, kb: nope}\n"
    )
    proc = run_cli("monitor", "check", "--rules", str(kb), home=h, check=False)
    assert proc.returncode == 2 and "nope" in proc.stderr


def test_signals_json(home: tuple[Path, Seeded]) -> None:
    h, seeded = home
    proc = run_cli("monitor", "signals", "--since", "1d", "--json", home=h)
    data = json.loads(proc.stdout)
    assert data["total"]["requests"] == len(seeded.usage) == 19
    rows = {(r["deployment"], r["model_version"]): r for r in data["rows"]}
    assert rows[("support", "m:v2")]["error_rate"] == pytest.approx(0.2)
    assert rows[("other", "*")]["requests"] == 4


def test_report_is_self_contained_with_roi(home: tuple[Path, Seeded], tmp_path: Path) -> None:
    h, seeded = home
    out = tmp_path / "report"
    proc = run_cli(
        "monitor", "report", "--since", "2d", "--out", str(out), "--cost-in", "2",
        "--cost-out", "6", "--currency", "CNY", "--reference", "faq", "--embedder", "minilm",
        home=h,
    )  # fmt: skip
    pt = sum(r["prompt_tokens"] for r in seeded.usage)
    ct = sum(r["completion_tokens"] for r in seeded.usage)
    cost = pt / 1000 * 2 + ct / 1000 * 6
    assert f"{len(seeded.usage)} requests, {pt + ct} tokens, cost {cost:.6g} CNY" in proc.stdout
    html = (out / "monitor.html").read_text(encoding="utf-8")
    data = json.loads((out / "monitor.json").read_text(encoding="utf-8"))
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<script" not in html
    assert html.count('src="data:image/png;base64,') >= 6
    assert data["roi"]["requests"] == 19 and data["roi"]["cost"] == pytest.approx(cost)
    assert data["roi"]["cost_per_request"] == pytest.approx(cost / 19)
    ratings = [f["rating"] for f in seeded.feedback if f["rating"] is not None]
    assert data["roi"]["mean_rating"] == pytest.approx(sum(ratings) / len(ratings))
    for shown in (f"{cost:.6g} CNY", f"{cost / 19:.6g} CNY", f"{sum(ratings) / 4:.3g}"):
        assert shown in html
    assert data["drift"]["reference"] == "faq:v1" and data["drift"]["distance"] is not None
    assert "Prompt drift" in html and "faq:v1" in html
    roi = {r["group"]: r for r in data["roi_deployments"]}
    assert roi["support"]["requests"] == 15 and roi["other"]["requests"] == 4


def test_report_prices_from_rules_file(home: tuple[Path, Seeded], tmp_path: Path) -> None:
    h, seeded = home
    rules = _rules(tmp_path, "rules: []\ncost: {in_per_1k: 1, out_per_1k: 0, currency: USD}\n")
    out = tmp_path / "r2"
    proc = run_cli(
        "monitor", "report", "--since", "1d", "--out", str(out), "--rules", str(rules),
        "--no-drift", home=h,
    )  # fmt: skip
    data = json.loads((out / "monitor.json").read_text(encoding="utf-8"))
    pt = sum(r["prompt_tokens"] for r in seeded.usage)
    assert data["cost"]["currency"] == "USD" and data["roi"]["cost"] == pytest.approx(pt / 1000)
    assert data["drift"] is None and "wrote" in proc.stdout
