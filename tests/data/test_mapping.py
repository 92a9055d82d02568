"""Format recognition and column mapping from loaded rows to records."""

from __future__ import annotations

import json

import pytest

from luodi.data.loaders.base import FileRejected, Loaded, Row, Segment
from luodi.data.mapping import CONVERTERS, Context, Converted, Mapping
from luodi.data.records import get_kind, meta_of


def convert(kind: str, loaded: Loaded, explicit: dict[str, str] | None = None) -> Converted:
    out = Converted()
    ctx = Context(get_kind(kind), "/src/f.jsonl", "ab" * 32, Mapping(explicit or {}))
    CONVERTERS.get(kind)(ctx, loaded, out)
    return out


def rows(*dicts: dict) -> Loaded:
    return Loaded(rows=[Row(d, f"line {i + 1}") for i, d in enumerate(dicts)])


def test_alpaca_with_history_and_system() -> None:
    out = convert(
        "qa",
        rows(
            {
                "instruction": "翻译",
                "input": "hello",
                "output": "你好",
                "system": "你是翻译",
                "history": [["hi", "嗨"]],
            }
        ),
    )
    assert out.records[0]["messages"] == [
        {"role": "system", "content": "你是翻译"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "嗨"},
        {"role": "user", "content": "翻译\n\nhello"},
        {"role": "assistant", "content": "你好"},
    ]


def test_sharegpt_and_openai_messages() -> None:
    out = convert(
        "qa",
        rows(
            {"conversations": [{"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"}]},
            {
                "messages": [
                    {"role": "user", "content": "Q2"},
                    {"role": "assistant", "content": "A2"},
                ]
            },
        ),
    )
    assert [r["messages"][1]["content"] for r in out.records] == ["A1", "A2"]
    assert out.records[0]["messages"][0]["role"] == "user"


def test_chinese_columns_and_meta_aliases() -> None:
    out = convert("qa", rows({"问题": "保修期多久？", "答案": "两年。", "类别": "售后"}))
    rec = out.records[0]
    assert rec["messages"] == [
        {"role": "user", "content": "保修期多久？"},
        {"role": "assistant", "content": "两年。"},
    ]
    assert meta_of(rec) == {"category": "售后"}
    assert rec["source"] == "/src/f.jsonl" and rec["location"] == "line 1"


def test_explicit_column_mapping() -> None:
    out = convert("qa", rows({"Q": "a?", "A": "b"}), {"question": "Q", "answer": "A"})
    assert out.records[0]["messages"][0]["content"] == "a?"
    with pytest.raises(FileRejected, match="--column"):
        convert("qa", rows({"x": 1, "y": 2}))


def test_bad_rows_reported_good_rows_kept() -> None:
    out = convert(
        "qa",
        rows(
            {"messages": [{"role": "user", "content": "only a question"}]},
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        ),
    )
    assert len(out.records) == 1
    assert out.problems == [("line 1", "no assistant message")]


def test_qa_needs_rows_not_documents() -> None:
    with pytest.raises(FileRejected, match="structured rows"):
        convert("qa", Loaded(segments=[Segment("text", "page 1")]))


def test_text_from_segments_and_rows() -> None:
    out = convert("text", Loaded(segments=[Segment("正文", "page 2", {"heading": "一"})]))
    assert out.records[0]["text"] == "正文" and out.records[0]["location"] == "page 2"
    out = convert("text", rows({"content": "abc", "time": "2026-01-01"}, {"content": ""}))
    assert [r["text"] for r in out.records] == ["abc"]
    assert meta_of(out.records[0]) == {"time": "2026-01-01"}
    assert out.problems == [("line 2", "empty 'content'")]


def test_labeled_rows() -> None:
    out = convert(
        "labeled", rows({"文本": "机床报警", "标签": "设备故障"}, {"文本": "x", "标签": ""})
    )
    assert (out.records[0]["text"], out.records[0]["label"]) == ("机床报警", "设备故障")
    assert out.problems == [("line 2", "empty label")]


def test_preference_direct_and_rated() -> None:
    out = convert("preference", rows({"prompt": "p", "chosen": "c", "rejected": "r"}))
    assert (out.records[0]["chosen"], out.records[0]["rejected"]) == ("c", "r")
    out = convert("preference", rows({"prompt": "p", "response": "r1", "rating": 5}))
    assert out.records == [] and out.rated[0]["rating"] == 5


def test_record_ids_are_stable_and_distinct() -> None:
    a = convert("text", rows({"text": "x"}, {"text": "x"}))
    b = convert("text", rows({"text": "x"}, {"text": "x"}))
    assert [r["id"] for r in a.records] == [r["id"] for r in b.records]
    assert len({r["id"] for r in a.records}) == 2
    assert json.loads(a.records[0]["meta"]) == {}
