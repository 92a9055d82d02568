"""Dataset profiles and the self-contained HTML/JSON quality report."""

from __future__ import annotations

import base64
import json
import random
import re
import warnings

import numpy as np
import pytest

from luodi.data import profile as profile_mod
from luodi.data.datasets import save_dataset
from luodi.data.pipeline import OpStats
from luodi.data.profile import Profile, lang_stride
from luodi.data.records import Record, get_kind, make_record
from luodi.data.report import DatasetReport, Problem, SourceFile
from luodi.data.report_html import chart_labels, render_html
from luodi.store import Store

EN = "The quarterly report covers revenue, costs and the outlook for next year."
ZH = "本季度报告涵盖了收入、成本以及明年的展望，请各部门认真阅读。"


def rec(kind: str, i: int, meta: dict | None = None, **fields: object) -> Record:
    return make_record(
        get_kind(kind),
        source="/src/f.jsonl",
        source_sha256="a" * 64,
        location=f"line {i}",
        ordinal=0,
        meta=meta,
        **fields,
    )


# -- profile ---------------------------------------------------------------------------


def test_text_profile_exact_small() -> None:
    records = [
        rec("text", 0, {"category": "财务"}, text=EN),
        rec("text", 1, {"category": "财务", "subject": "tax"}, text=ZH),
        rec("text", 2, {"category": "法律"}, text=ZH + ZH),
        rec("text", 3, text="x" * 10),
    ]
    records[0]["split"] = "train"
    p = Profile(get_kind("text"))
    p.add(records[:2])
    p.add(records[2:])
    out = p.result()
    lens = [len(EN), len(ZH), 2 * len(ZH), 10]
    assert out["rows"] == 4
    assert out["splits"] == {"train": 1, "unsplit": 3}
    length = out["length"]
    assert (length["min"], length["max"]) == (10, len(EN))
    assert length["mean"] == pytest.approx(sum(lens) / 4, abs=0.01)
    assert length["p50"] == pytest.approx(float(np.percentile(lens, 50)), abs=0.1)
    assert length["percentiles"] == "exact"
    assert sum(length["histogram"]["counts"]) == 4
    assert out["languages"]["counts"] == {"zh": 2, "en": 2}
    assert out["languages"]["sampled"] == 4
    assert out["meta"] == {"category": {"财务": 2, "法律": 1}, "subject": {"tax": 1}}


def test_histogram_percentiles_approximate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profile_mod, "EXACT_LENGTHS", 100)
    rng = np.random.default_rng(0)
    lens = np.exp(rng.uniform(np.log(20), np.log(20000), 5000)).astype(int)
    p = Profile("text")
    for i in range(0, len(lens), 1000):
        p.add([{"text": "a" * n} for n in lens[i : i + 1000]])
    out = p.result()["length"]
    assert out["percentiles"].startswith("approximate")
    for q in (50, 90, 99):
        exact = float(np.percentile(lens, q))
        assert abs(out[f"p{q}"] - exact) / exact < 0.08, (q, out[f"p{q}"], exact)
    assert (out["min"], out["max"]) == (int(lens.min()), int(lens.max()))
    hist = out["histogram"]
    assert sum(hist["counts"]) == 5000 and len(hist["edges"]) == len(hist["counts"]) + 1
    # Every bin's count equals the lengths falling in [edge_j, edge_j+1).
    edges = np.array(hist["edges"])
    j = 5
    in_bin = ((lens >= edges[j] - 0.005) & (lens < edges[j + 1] - 0.005)).sum()
    assert hist["counts"][j] == in_bin


def test_language_sampling_is_weighted(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [lang_stride(i) for i in (0, 9_999, 10_000, 99_999, 100_000, 2_000_000)] == [
        1, 1, 10, 10, 100, 1000,
    ]  # fmt: skip
    monkeypatch.setattr(profile_mod, "LANG_EVERY_UNTIL", 100)
    calls = []

    def fake_detect(text: str) -> str:
        calls.append(text)
        return "zh" if text.startswith("本") else "en"

    monkeypatch.setattr(profile_mod, "_detect", fake_detect)
    p = Profile("text")
    # 1000 English then 3000 Chinese: a uniform estimate must see 1:3.
    p.add([{"text": EN} for _ in range(1000)])
    p.add([{"text": ZH} for _ in range(3000)])
    langs = p.result()["languages"]
    assert langs["sampled"] == len(calls) == 100 + 90 + 30  # strides 1, 10, then 100
    assert langs["counts"] == {"zh": 3000, "en": 1000}
    assert "estimates" in langs["method"]


def test_qa_preference_labeled_profiles() -> None:
    def msgs(*roles: str) -> list[dict[str, str]]:
        return [{"role": r, "content": f"{r} says hi there"} for r in roles]

    qa = Profile("qa")
    qa.add(
        [
            rec("qa", 0, messages=msgs("user", "assistant")),
            rec("qa", 1, messages=msgs("system", "user", "assistant")),
            rec("qa", 2, messages=msgs("user", "assistant", "user", "assistant")),
            rec("qa", 3, messages=msgs("system", *["user", "assistant"] * 3)),
            rec("qa", 4, messages=msgs("user", "assistant") * 4),
        ]
    )
    out = qa.result()
    assert out["turns"] == {"1": 2, "2": 1, "3+": 2}
    assert out["has_system"] == 2

    pref = Profile("preference")
    ratings = [(1.0, 0.0), (0.75, 0.5), (0.5, 0.5), (0.2, None)]
    pref.add(
        [
            rec(
                "preference",
                i,
                prompt="q",
                chosen="a",
                rejected="b",
                chosen_rating=c,
                rejected_rating=r,
            )
            for i, (c, r) in enumerate(ratings)
        ]
    )
    r = pref.result()["ratings"]
    assert r["chosen_mean"] == pytest.approx((1.0 + 0.75 + 0.5 + 0.2) / 4, abs=1e-4)
    assert r["rejected_mean"] == pytest.approx(1.0 / 3, abs=1e-4)
    assert r["rated"] == 3
    hist = r["margin_histogram"]
    counts = dict(zip(hist["edges"][:-1], hist["counts"], strict=True))
    # Margins 1.0 (top bin, closed), 0.25 and 0.0.
    assert counts[0.9] == 1 and counts[0.2] == 1 and counts[0.0] == 1
    assert sum(r["margin_histogram"]["counts"]) == 3

    lab = Profile("labeled")
    lab.add([rec("labeled", i, text="t", label=lab_) for i, lab_ in enumerate("aabac")])
    lab.add([rec("labeled", 9, text="t", label=None)])
    assert lab.result()["labels"] == {"a": 3, "(none)": 1, "b": 1, "c": 1}


# -- report ----------------------------------------------------------------------------


def _report() -> DatasetReport:
    return DatasetReport(
        name="合同",
        stage="clean",
        record_kind="labeled",
        parents=[],
        sources=[
            SourceFile(path="/data/合同.csv", sha256="f" * 64, format="csv", records=3),
        ],
        skipped=[
            Problem(path="/data/broken.pdf", reason="encrypted PDF: needs a password"),
            Problem(path="/data/合同.csv", reason="row has 3 fields, expected 2", location="row 7"),
        ],
        operators=[
            OpStats(
                step=1,
                op="quality_filter",
                params={"min_chars": 5},
                records_in=4,
                kept=3,
                dropped=1,
                drop_reasons={"too short": 1},
                examples={
                    "too short": [
                        {"id": "r1", "text": "<script>alert(1)</script>", "detail": "2 < 5"}
                    ]
                },
            )
        ],
        notes={"recipe": "operators: [quality_filter]", "ratios": {"train": 0.8}},
    )


def test_report_files_self_contained_and_escaped(store: Store) -> None:
    records = [
        rec("labeled", i, {"category": c}, text=t, label=lab)
        for i, (t, lab, c) in enumerate(
            [(ZH, "正面", "财务"), (EN, "neg", "法律"), (ZH + EN, "正面", "财务")]
        )
    ]
    report = _report()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. matplotlib's "Glyph ... missing from font"
        res = save_dataset(store, report, [records])
    page = open(res.report_html, encoding="utf-8").read()
    assert '<meta charset="utf-8">' in page
    assert "encrypted PDF: needs a password" in page
    assert "row has 3 fields, expected 2" in page and "row 7" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page
    assert "http" not in page and 'src="/' not in page
    for text in ("合同", "正面", "财务", "quality_filter", "too short", "ffffffffffff"):
        assert text in page
    pngs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(pngs) >= 3  # length, languages, labels, category
    for b64 in pngs:
        assert base64.b64decode(b64).startswith(b"\x89PNG\r\n\x1a\n")
    assert len(page) < 200_000

    data = json.loads(open(res.report_json, encoding="utf-8").read())
    back = DatasetReport.model_validate(data)
    assert back == report
    assert back.rows == 3 and back.profile["labels"] == {"正面": 2, "neg": 1}
    assert back.operators[0].examples["too short"][0]["text"] == "<script>alert(1)</script>"
    # Same report, same bytes: nothing time-dependent goes into the page.
    assert render_html(back) == page


def test_chart_labels_replace_undrawable() -> None:
    labels = chart_labels(["ok", "\U000f0000 private"])
    assert labels == ["ok", "[2]"]


def test_large_skipped_list_truncated() -> None:
    report = DatasetReport(
        name="big",
        stage="ingest",
        record_kind="text",
        skipped=[
            Problem(path="/d/a.jsonl", reason=f"line is not JSON #{i}", location=f"line {i}")
            for i in range(600)
        ]
        + [Problem(path=f"/d/{i}.pdf", reason="encrypted PDF") for i in range(3)],
    )
    page = render_html(report)
    # Rejected files are listed first, then rows up to 500 entries in all.
    assert page.index("/d/2.pdf") < page.rindex("line is not JSON #0<")
    assert "line is not JSON #496" in page and "line is not JSON #497" not in page
    assert "103 more in report.json" in page
    assert "(3 files, 600 rows)" in page
    # The by-reason summary groups repeats and is capped at 50 reasons.
    assert re.search(r"<td>encrypted PDF</td><td class=\"n\">3</td>", page)
    assert "551 more reasons" in page


def test_random_profile_matches_counts_through_save(store: Store) -> None:
    rng = random.Random(1)
    cats = [rng.choice(["a", "b", "c"]) for _ in range(200)]
    records = [rec("text", i, {"category": c}, text=EN * (1 + i % 3)) for i, c in enumerate(cats)]
    res = save_dataset(
        store, DatasetReport(name="t", stage="ingest", record_kind="text"), [records]
    )
    prof = json.loads(open(res.report_json, encoding="utf-8").read())["profile"]
    expected = {c: cats.count(c) for c in "abc"}
    assert prof["meta"]["category"] == dict(sorted(expected.items(), key=lambda kv: -kv[1]))
    assert prof["rows"] == 200 and prof["languages"]["counts"] == {"en": 200}
