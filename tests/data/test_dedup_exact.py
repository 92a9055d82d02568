"""Exact dedup: the first of each set of equal (normalized) contents stays, the rest are
dropped with "same as <kept id>", on text, qa and preference records, through run_ops."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from luodi.data.ops import Recipe
from luodi.data.ops.base import Drop
from luodi.data.ops.dedup_exact import ExactDedup, content_key, first_occurrences
from luodi.data.pipeline import run_ops
from luodi.data.records import Record, RecordKind, get_kind, make_record


def _records(kind: RecordKind, rows: list[dict]) -> list[Record]:
    return [
        make_record(
            kind, source="/d.jsonl", source_sha256="0" * 64, location=f"line {i}", ordinal=i, **row
        )
        for i, row in enumerate(rows)
    ]


def _run(kind_name: str, recs: list[Record], batch: int = 2, **params: object):
    ops = Recipe(operators=[{"op": "exact_dedup", **params}]).build(get_kind(kind_name))
    out: list[Record] = []
    batches = [recs[i : i + batch] for i in range(0, len(recs), batch)]
    result = run_ops(ops, batches, out.extend)
    return out, result.operators[0]


def test_content_key_is_blake2b_128_of_normalized_text() -> None:
    want = hashlib.blake2b("hello world 你好".encode(), digest_size=16).digest()
    assert content_key("  Hello\n\tWORLD   你好 ") == want
    assert content_key("  Hello\n\tWORLD   你好 ", normalize=False) != want
    assert len(want) == 16


def test_first_occurrences_matches_a_dict_reference() -> None:
    rng = np.random.default_rng(3)
    keys = [bytes([int(k)]) * 16 for k in rng.integers(0, 40, size=500)]
    seen: dict[bytes, int] = {}
    ref_dup, ref_kept = [], []
    for i, k in enumerate(keys):
        if k in seen:
            ref_dup.append(i)
            ref_kept.append(seen[k])
        else:
            seen[k] = i
    dup, kept = first_occurrences(b"".join(keys))
    assert dup.tolist() == ref_dup and kept.tolist() == ref_kept
    empty = first_occurrences(b"")
    assert empty[0].size == 0 and empty[1].size == 0


def test_text_duplicates_dropped_first_kept_with_stats_and_detail() -> None:
    texts = ["甲 文档 A", "乙 文档 B", "甲 文档 A", "丙 文档 C", "乙 文档 B", "甲 文档 A"]
    recs = _records(get_kind("text"), [{"text": t} for t in texts])
    out, stats = _run("text", recs)
    assert [r["id"] for r in out] == [recs[0]["id"], recs[1]["id"], recs[3]["id"]]
    assert (stats.records_in, stats.kept, stats.dropped, stats.modified) == (6, 3, 3, 0)
    assert stats.drop_reasons == {"duplicate": 3}
    details = {e["id"]: e["detail"] for e in stats.examples["duplicate"]}
    assert details == {
        recs[2]["id"]: f"same as {recs[0]['id']}",
        recs[4]["id"]: f"same as {recs[1]['id']}",
        recs[5]["id"]: f"same as {recs[0]['id']}",
    }


def test_normalize_on_and_off() -> None:
    texts = ["Quality Report 2024", "quality   report\n2024", "QUALITY REPORT 2024 "]
    recs = _records(get_kind("text"), [{"text": t} for t in texts])
    out, stats = _run("text", recs)
    assert [r["text"] for r in out] == ["Quality Report 2024"]
    assert stats.dropped == 2
    out, stats = _run("text", recs, normalize=False)
    assert [r["text"] for r in out] == texts
    assert stats.dropped == 0
    exact = _records(get_kind("text"), [{"text": t} for t in [texts[0], texts[0]]])
    out, stats = _run("text", exact, normalize=False)
    assert len(out) == 1 and stats.drop_reasons == {"duplicate": 1}


def test_qa_records_compare_message_contents() -> None:
    def qa(q: str, a: str) -> dict:
        return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}

    rows = [
        qa("年假几天？", "5天"),
        qa("年假几天?", "5天"),
        qa("年假几天？", " 5天 "),
        qa("年假几天？", "10天"),
    ]
    recs = _records(get_kind("qa"), rows)
    out, stats = _run("qa", recs, batch=1)
    assert [r["id"] for r in out] == [recs[0]["id"], recs[1]["id"], recs[3]["id"]]
    assert stats.examples["duplicate"][0]["detail"] == f"same as {recs[0]['id']}"


def test_preference_records_compare_all_three_texts() -> None:
    def pref(p: str, c: str, r: str) -> dict:
        return {
            "prompt": p,
            "chosen": c,
            "rejected": r,
            "chosen_rating": 1.0,
            "rejected_rating": 0.0,
        }

    rows = [
        pref("如何报销？", "填写报销单", "不知道"),
        pref("如何报销？", "填写报销单", "随便"),
        pref("如何报销？", "填写报销单", "不知道"),
    ]
    recs = _records(get_kind("preference"), rows)
    out, stats = _run("preference", recs)
    assert [r["id"] for r in out] == [recs[0]["id"], recs[1]["id"]]
    assert stats.dropped == 1


def test_fit_then_process_directly_and_refit_resets() -> None:
    kind = get_kind("text")
    recs = _records(kind, [{"text": t} for t in ["a", "b", "a"]])
    op = ExactDedup().bind(kind)
    op.fit([recs[:1], recs[1:]])
    assert op.duplicates == {recs[2]["id"]: recs[0]["id"]}
    out = op.process(recs)
    assert out[0] is recs[0] and out[1] is recs[1]
    assert out[2] == Drop("duplicate", f"same as {recs[0]['id']}")
    op.fit([recs[1:]])
    assert op.duplicates == {}


@pytest.mark.parametrize("n_batches", [1, 7])
def test_duplicates_across_many_batches(n_batches: int) -> None:
    texts = [f"doc {i % 37}" for i in range(300)]
    recs = _records(get_kind("text"), [{"text": t} for t in texts])
    out, stats = _run("text", recs, batch=-(-300 // n_batches))
    assert [r["text"] for r in out] == [f"doc {i}" for i in range(37)]
    assert stats.dropped == 300 - 37
