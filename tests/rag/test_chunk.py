"""Chunking (luodi.rag.chunk): offsets, sentence boundaries, tables, sections, overlap, units."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from luodi.data.loaders import load_file
from luodi.data.loaders.base import Segment
from luodi.errors import BadInputError
from luodi.rag.chunk import Chunk, ChunkConfig, chunk_segments, document_text

ZH_SENTENCES = [
    "员工每年享有带薪年假十天。",
    "年假需要提前三个工作日在系统中申请！",
    "未休完的年假可以顺延到次年第一季度吗？",
    "可以顺延，但最多五天；",
    "病假需要提供医院开具的证明。",
    "事假按日扣除工资。",
    "加班可以申请调休或加班费。",
    "调休须在三个月内使用完毕！",
]


def numbered(times: int) -> list[str]:
    """Distinct sentences (duplicate chunks are dropped, which would blur coverage checks)."""
    return [f"第{i}条{s}" for i, s in enumerate(ZH_SENTENCES * times)]


TABLE = "\n".join(
    [
        "| 假期类型 | 天数 | 说明 |",
        "|---|---|---|",
        "| 年假 | 10 | 入职满一年 |",
        "| 病假 | 15 | 需证明 |",
        "| 婚假 | 3 | 法定 |",
    ]
)


def covered(chunks: list[Chunk], text: str) -> set[int]:
    return {i for c in chunks for i in range(c.start, c.end)}


def check_slices(chunks: list[Chunk], segments: list[Segment], cfg: ChunkConfig) -> str:
    text = document_text(segments)
    for c in chunks:
        assert c.text == text[c.start : c.end]
        assert c.text == c.text.strip() and c.text
        assert len(c.text) <= cfg.size
    # Every non-blank character of the document is in some chunk.
    missing = set(range(len(text))) - covered(chunks, text)
    assert all(text[i].isspace() for i in missing)
    return text


def test_offsets_slice_the_document_for_every_chunk() -> None:
    segments = [
        Segment("## 1 总则\n\n" + "".join(numbered(2)), "手册 > 1 总则"),
        Segment(" ".join(f"Plain text {i} on a page." for i in range(20)), "page 4"),
        Segment("line one\nline two\n\n" + "".join(f"{i:04d}" for i in range(120)), "lines 1-3"),
    ]
    for size, overlap in [(40, 0), (60, 15), (120, 30), (500, 80)]:
        cfg = ChunkConfig(size=size, overlap=overlap)
        chunks = chunk_segments("doc1", "handbook.md", segments, cfg)
        check_slices(chunks, segments, cfg)
        assert [c.start for c in chunks] == sorted(c.start for c in chunks)


def test_chinese_sentences_are_never_cut_when_a_boundary_fits() -> None:
    para = "".join(numbered(3))
    segments = [Segment(para, "1 总则")]
    longest = max(len(s) for s in numbered(3))
    for size in (longest, 30, 45, 70):
        for overlap in (0, 12):
            if overlap >= size:
                continue
            cfg = ChunkConfig(size=size, overlap=overlap)
            chunks = chunk_segments("d", "a.txt", segments, cfg)
            check_slices(chunks, segments, cfg)
            assert len(chunks) > 1
            for c in chunks:
                # Starts and ends fall exactly on sentence boundaries of the paragraph.
                assert c.text[-1] in "。！？；", c.text
                assert c.start == 0 or para[c.start - 1] in "。！？；", c.text


def test_english_sentences_and_decimals() -> None:
    para = "Version 3.14 is current. Install it with pip! Does it run offline? Yes it does."
    cfg = ChunkConfig(size=41, overlap=0)
    texts = [c.text for c in chunk_segments("d", "e.txt", [Segment(para, "x")], cfg)]
    assert texts == ["Version 3.14 is current.", "Install it with pip! Does it run offline?",
                     "Yes it does."]  # fmt: skip


def test_a_table_that_fits_is_never_split() -> None:
    body = "".join(ZH_SENTENCES[:4]) + "\n\n" + TABLE + "\n\n" + "".join(ZH_SENTENCES[4:])
    segments = [Segment("## 2 假期\n\n" + body, "手册 > 2 假期")]
    rows = TABLE.split("\n")
    for size in range(len(TABLE), len(TABLE) + 120, 7):
        for overlap in (0, 20, 40):
            cfg = ChunkConfig(size=size, overlap=overlap)
            chunks = chunk_segments("d", "a.md", segments, cfg)
            check_slices(chunks, segments, cfg)
            with_rows = [c for c in chunks if any(r in c.text for r in rows)]
            assert with_rows, size
            for c in with_rows:
                assert TABLE in c.text, (size, overlap, c.text)  # whole, never a part


def test_a_table_too_big_is_split_between_rows() -> None:
    table = "\n".join(["| a | b |", "|---|---|"] + [f"| 行{i} | 值{i} |" for i in range(40)])
    segments = [Segment(table, "表")]
    cfg = ChunkConfig(size=60, overlap=0)
    chunks = chunk_segments("d", "t.md", segments, cfg)
    check_slices(chunks, segments, cfg)
    for c in chunks:
        assert all(line.startswith("|") and line.endswith("|") for line in c.text.split("\n"))


def test_overlap_stays_inside_a_section_and_within_its_size() -> None:
    a = "".join(ZH_SENTENCES)
    b = "Second section text. It has sentences. Several of them here. And one more."
    segments = [Segment(a, "1 总则"), Segment(b, "2 假期")]
    cfg = ChunkConfig(size=40, overlap=20)
    chunks = chunk_segments("d", "h.md", segments, cfg)
    check_slices(chunks, segments, cfg)
    text = document_text(segments)
    boundary = len(a)
    first = [c for c in chunks if c.section == "1 总则"]
    second = [c for c in chunks if c.section == "2 假期"]
    assert first and second and len(first) + len(second) == len(chunks)
    assert all(c.end <= boundary for c in first) and all(c.start > boundary for c in second)
    overlaps = 0
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        if prev.section != nxt.section:
            assert nxt.start >= prev.end  # no text carried across sections
        elif nxt.start < prev.end:
            overlaps += 1
            shared = text[nxt.start : prev.end]
            assert len(shared) <= cfg.overlap and prev.text.endswith(shared)
    assert overlaps >= 2
    no_overlap = chunk_segments("d", "h.md", segments, ChunkConfig(size=40, overlap=0))
    assert all(n.start >= p.end for p, n in zip(no_overlap, no_overlap[1:], strict=False))


def test_token_unit_measures_with_the_count_function() -> None:
    calls: list[str] = []

    def words(text: str) -> int:
        calls.append(text)
        return len(text.split())

    para = " ".join(f"Word{i} is here." for i in range(60))  # 3 words per sentence
    segments = [Segment(para, "whole file")]
    cfg = ChunkConfig(size=10, overlap=3, unit="tokens")
    chunks = chunk_segments("d", "w.txt", segments, cfg, count=words)
    assert calls
    assert all(words(c.text) <= 10 for c in chunks)
    assert max(words(c.text) for c in chunks) == 9  # three sentences fill 10 words best
    assert all(c.text.endswith(".") for c in chunks)
    chars = chunk_segments("d", "w.txt", segments, ChunkConfig(size=10, overlap=3))
    assert len(chars) > 2 * len(chunks)  # 10 characters is far less than 10 words
    with pytest.raises(BadInputError, match="count function"):
        chunk_segments("d", "w.txt", segments, cfg)
    with pytest.raises(BadInputError, match="more than the embedder can count"):
        chunk_segments("d", "w.txt", segments, cfg, count=lambda t: min(8, len(t.split())))


def test_sections_pages_and_in_text_headings() -> None:
    guide = "# Guide\n\n## Install\n\nRun the installer.\n\n## Use\n\nOpen the app."
    segments = [
        Segment("Intro words before any heading.", "whole file"),
        Segment(guide, "lines 3-9"),
        Segment("Text on page seven.", "page 7"),
        Segment("## 3 范围\n\n适用于全体员工。", "制度 > 3 范围"),
    ]
    chunks = chunk_segments("d", "g.txt", segments, ChunkConfig(size=200, overlap=0))
    got = [(c.section, c.page, c.text) for c in chunks]
    assert got == [
        (None, None, "Intro words before any heading."),
        ("Guide > Install", None, "## Install\n\nRun the installer."),
        ("Guide > Use", None, "## Use\n\nOpen the app."),
        (None, 7, "Text on page seven."),
        ("制度 > 3 范围", None, "## 3 范围\n\n适用于全体员工。"),
    ]


def test_ids_are_stable_and_duplicates_kept_once() -> None:
    segments = [
        Segment("Same words.", "a"),
        Segment("Other words.", "b"),
        Segment("Same words.", "c"),
    ]
    cfg = ChunkConfig(size=100, overlap=0)
    chunks = chunk_segments("doc-9", "x.txt", segments, cfg)
    expected = hashlib.sha256(b"doc-9\0Same words.").hexdigest()[:16]
    assert chunks[0].id == expected and chunks[0].doc_id == "doc-9" and chunks[0].source == "x.txt"
    assert [c.text for c in chunks] == ["Same words.", "Other words."]
    assert chunk_segments("doc-9", "x.txt", segments, cfg) == chunks
    assert chunk_segments("doc-8", "x.txt", segments, cfg)[0].id != expected


def test_long_text_without_boundaries_is_cut_at_commas_then_hard() -> None:
    clauses = "".join(f"这是第{i}个没有句号的很长的从句，" for i in range(12))
    segments = [Segment(clauses + "".join(f"{i:03d}" for i in range(50)), "s")]
    cfg = ChunkConfig(size=50, overlap=10)
    chunks = chunk_segments("d", "l.txt", segments, cfg)
    check_slices(chunks, segments, cfg)
    comma_cut = [c for c in chunks if c.end < len(clauses)]
    assert len(comma_cut) >= 3 and all(c.text.endswith("，") for c in comma_cut)
    assert all(len(c.text) <= 50 for c in chunks) and chunks[-1].text.endswith("049")


def test_config_rules() -> None:
    with pytest.raises(ValidationError, match="overlap"):
        ChunkConfig(size=100, overlap=100)
    with pytest.raises(ValidationError):
        ChunkConfig(size=100, overlap=0, chunk_size=5)  # type: ignore[call-arg]
    assert chunk_segments("d", "e.txt", [], ChunkConfig()) == []
    assert chunk_segments("d", "e.txt", [Segment("  \n\n ", "whole file")], ChunkConfig()) == []


def test_a_loaded_markdown_file(tmp_path: Path) -> None:
    md = tmp_path / "handbook.md"
    md.write_text(
        "# 员工手册\n\n## 1 总则\n\n"
        + "".join(ZH_SENTENCES)
        + "\n\n## 2 假期\n\n"
        + TABLE
        + "\n\n"
        + "".join(ZH_SENTENCES[::-1])
        + "\n",
        encoding="utf-8",
    )
    segments = load_file(md).segments
    cfg = ChunkConfig(size=120, overlap=30)
    chunks = chunk_segments("h1", str(md), segments, cfg)
    check_slices(chunks, segments, cfg)
    assert {c.section for c in chunks} == {s.location for s in segments}
    assert {c.section for c in chunks} == {"员工手册 > 1 总则", "员工手册 > 2 假期"}
    assert any(TABLE in c.text for c in chunks)
    assert all(re.search(r"[。！？；|]$", c.text) for c in chunks)
