"""PDF heading detection (luodi.data.loaders.pdf, pdf_headings): real PDFs written with
reportlab, read back through the loader, cut into sections that chunks never cross."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

from luodi.data.loaders import load_file
from luodi.data.loaders.pdf_headings import (
    font_headings,
    join_wrapped,
    line_sizes,
    numbered_headings,
    plausible,
)
from luodi.rag.chunk import ChunkConfig, chunk_segments, document_text

FONT = "STSong-Light"


@pytest.fixture(scope="module", autouse=True)
def cjk_font() -> None:
    pdfmetrics.registerFont(UnicodeCIDFont(FONT))


def write_pdf(path: Path, pages: list[list[tuple[float, str]]], running: bool = False) -> Path:
    """Pages of (font size, line) drawn top-down; `running`: with a running header and a
    numbered footer on every page (which the loader removes from 3 pages on)."""
    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    for number, lines in enumerate(pages, 1):
        if running:
            c.setFont(FONT, 9)
            c.drawString(72, 800, "星河精密 内部资料")
            c.drawString(72, 40, f"第 {number} 页")
        y = 760.0
        for size, line in lines:
            c.setFont(FONT, size)
            c.drawString(72, y, line)
            y -= size * 1.6
        c.showPage()
    c.save()
    path.write_bytes(buf.getvalue())
    return path


BODY = 10.5
MANUAL = [
    [
        (18, "XH-S200 伺服驱动器手册"),
        (BODY, "本手册适用于 XH-S200 系列。"),
        (14, "1 安全"),
        (BODY, "通电时不得拆卸外壳。"),
        (BODY, "维修前断电并等待 5 分钟。"),
        (14, "2 安装"),
        (12, "2.1 环境"),
        (BODY, "环境温度 0-40 ℃，湿度不超过 90%。"),
        (BODY, "12000 rpm"),
        (12, "2.2 接线"),
        (BODY, "1. 先接地线，再接动力线。"),
    ],
    [
        (BODY, "2. 编码器线与动力线分开走线。"),
        (14, "3 报警"),
        (BODY, "AL-01 过流：检查电机绝缘。"),
    ],
    [(14, "4 保修"), (BODY, "整机保修 12 个月。")],
]


def test_font_size_headings_cut_pages_into_sections(tmp_path: Path) -> None:
    loaded = load_file(write_pdf(tmp_path / "s200.pdf", MANUAL, running=True))
    got = [(s.location, s.meta.get("section"), s.text) for s in loaded.segments]
    title = "XH-S200 伺服驱动器手册"
    assert got == [
        ("page 1", title, f"{title}\n本手册适用于 XH-S200 系列。"),
        ("page 1", f"{title} > 1 安全", "1 安全\n通电时不得拆卸外壳。\n维修前断电并等待 5 分钟。"),
        # "2 安装" has no body of its own: it lives on in its subsections' paths.
        (
            "page 1",
            f"{title} > 2 安装 > 2.1 环境",
            "2.1 环境\n环境温度 0-40 ℃，湿度不超过 90%。\n12000 rpm",
        ),
        ("page 1", f"{title} > 2 安装 > 2.2 接线", "2.2 接线\n1. 先接地线，再接动力线。"),
        # The section goes on across the page break until the next heading.
        ("page 2", f"{title} > 2 安装 > 2.2 接线", "2. 编码器线与动力线分开走线。"),
        ("page 2", f"{title} > 3 报警", "3 报警\nAL-01 过流：检查电机绝缘。"),
        ("page 3", f"{title} > 4 保修", "4 保修\n整机保修 12 个月。"),
    ]
    assert [s.meta["page"] for s in loaded.segments] == [1, 1, 1, 1, 2, 2, 3]
    assert "星河精密 内部资料" not in document_text(loaded.segments)  # running lines removed


def test_chunks_of_a_manual_stay_inside_one_section(tmp_path: Path) -> None:
    loaded = load_file(write_pdf(tmp_path / "s200.pdf", MANUAL))
    text = document_text(loaded.segments)
    # Chunks big enough to hold two sections still stop at each heading.
    chunks = chunk_segments("d", "s200.pdf", loaded.segments, ChunkConfig(size=400, overlap=0))
    assert len(chunks) == len(loaded.segments)
    for c, s in zip(chunks, loaded.segments, strict=True):
        assert c.text == s.text == text[c.start : c.end]
        assert (c.section, c.page) == (s.meta["section"], s.meta["page"])
    alarm = next(c for c in chunks if "AL-01" in c.text)
    assert alarm.section.endswith("3 报警") and "编码器" not in alarm.text


def test_numbered_headings_when_every_line_has_one_size(tmp_path: Path) -> None:
    lines = [
        "第一章 总则",
        "为规范设备维护，制定本制度。",
        "1 范围",
        "本制度适用于全部机床。",
        "12000 rpm",  # a table cell: 12000 does not continue the numbering
        "1.1 设备",
        "3. 松开急停按钮",  # a numbered step: 3 does not follow 1.1
        "2 职责",
        "设备科负责日常点检。",
        "第二章 保养",
        "每日清理切屑。",
    ]
    loaded = load_file(write_pdf(tmp_path / "rules.pdf", [[(BODY, x) for x in lines]]))
    got = [(s.meta.get("section"), s.text.split("\n")) for s in loaded.segments]
    assert got == [
        ("第一章 总则", lines[0:2]),
        ("第一章 总则 > 1 范围", lines[2:5]),
        ("第一章 总则 > 1 范围 > 1.1 设备", lines[5:7]),
        ("第一章 总则 > 2 职责", lines[7:9]),
        ("第二章 保养", lines[9:11]),
    ]


def test_a_pdf_without_headings_is_one_segment_per_page(tmp_path: Path) -> None:
    pages = [[(BODY, "设备需要可靠接地。"), (BODY, "每日检查油位。")], [(BODY, "Model XH-2.")]]
    loaded = load_file(write_pdf(tmp_path / "plain.pdf", pages))
    assert [(s.location, s.meta, s.text) for s in loaded.segments] == [
        ("page 1", {"page": 1}, "设备需要可靠接地。\n每日检查油位。"),
        ("page 2", {"page": 2}, "Model XH-2."),
    ]


def test_heading_rules() -> None:
    # A sentence, a bare number and an over-long line are never headings.
    assert plausible("2.1 环境") and plausible("Safety Instructions")
    assert not plausible("维修前断电并等待 5 分钟。") and not plausible("12 / 48")
    assert not plausible("长" * 81)
    # Wrapped headings rejoin with a space between words, none between CJK characters.
    assert join_wrapped(["Vertical Machining", "Center"]) == "Vertical Machining Center"
    assert join_wrapped(["立式加工", "中心 使用手册"]) == "立式加工中心 使用手册"
    # Sizes per line come from the fragments only when they add up to the text.
    frags = [("1 安全\n", 14.0), ("通电时", 10.5), ("不得拆卸。", 10.5)]
    assert line_sizes("1 安全\n通电时不得拆卸。", frags) == [14.0, 10.5]
    assert line_sizes("something else", frags) is None
    # Two wrapped lines of one larger size are one heading; levels rank the sizes.
    lines = ["Title of a", "long manual", "1 Scope", "Body text here, long enough to count."]
    found = font_headings(lines, [18.0, 18.0, 14.0, 10.0])
    assert [(h.line, h.lines, h.level, h.title) for h in found] == [
        (0, 2, 0, "Title of a long manual"),
        (2, 1, 1, "1 Scope"),
    ]
    assert font_headings(lines, [10.0] * 4) == []
    # Decimal numbering must start at 1 (or 0) and continue; 第X章/节 need no sequence.
    assert [h.title for h in numbered_headings(["5 Intro", "1 Intro", "1.2 Skip", "2 Next"])] == [
        "1 Intro",
        "2 Next",
    ]
