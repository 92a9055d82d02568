"""Loaders of the data stage: every format built here, in tmp_path, and read back."""

from __future__ import annotations

import codecs
import io
import json
import shutil
from pathlib import Path

import docx
import openpyxl
import pytest
from docx.enum.style import WD_STYLE_TYPE
from pypdf import PdfReader, PdfWriter
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

from luodi.data.loaders import (
    LOADERS,
    SUPPORTED_SUFFIXES,
    FileRejected,
    decode_bytes,
    load_file,
    read_text,
)
from luodi.data.loaders import text as text_loader
from luodi.data.loaders.pdf import strip_running_lines
from luodi.data.loaders.sections import markdown_table, split_plain
from luodi.errors import BadInputError

ZH = "产品手册\n第一章 安装说明：请先关闭电源，再连接地线。\n"


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def rejected(path: Path) -> str:
    with pytest.raises(FileRejected) as info:
        load_file(path)
    assert isinstance(info.value, BadInputError)
    return str(info.value)


# --- encodings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoded",
    [
        ZH.encode("gbk"),
        ZH.encode("gb18030"),
        ZH.encode("utf-16"),  # with BOM
        codecs.BOM_UTF16_BE + ZH.encode("utf-16-be"),
        ZH.encode("utf-8-sig"),
        ZH.encode("utf-8"),
        ZH.replace("\n", "\r\n").encode("gbk"),
    ],
    ids=["gbk", "gb18030", "utf16le-bom", "utf16be-bom", "utf8-bom", "utf8", "gbk-crlf"],
)
def test_read_text_decodes_chinese_exactly(tmp_path: Path, encoded: bytes) -> None:
    assert read_text(write(tmp_path, "a.txt", encoded)) == ZH
    loaded = load_file(tmp_path / "a.txt")
    assert [(s.text, s.location) for s in loaded.segments] == [(ZH.strip(), "whole file")]


def test_encoding_detection_edge_cases() -> None:
    # Two GBK characters: charset-normalizer alone guesses Big5 ("斕疑").
    assert decode_bytes("你好".encode("gbk")) == "你好"
    # A 4-byte GB18030 sequence (CJK extension B) and the euro sign.
    assert decode_bytes("𠀀汉字 €".encode("gb18030")) == "𠀀汉字 €"
    # Real Big5 would be private-use garbage as GB18030; the Big5 guess is kept.
    big5 = "產品手冊 第一章 安裝說明，請先關閉電源。"
    assert decode_bytes(big5.encode("big5")) == big5
    # Western text whose bytes happen to be valid GB18030 stays Western.
    assert decode_bytes("Straße Müller Größe".encode("cp1252")) == "Straße Müller Größe"
    with pytest.raises(FileRejected, match="not a text file"):
        decode_bytes(bytes(range(256)) * 4)


# --- plain text and Markdown ------------------------------------------------------------


def test_split_plain_packs_paragraphs_by_line_range() -> None:
    paras = ["a" * 1500, "b" * 1500, "c" * 1500, "d\n" * 3 + "e" * 5000]
    text = "\n\n".join(p.rstrip("\n") for p in paras)
    segments = split_plain(text, max_chars=4000)
    # lines: a=1, b=3, c=5, d=7-9, e=10 (5000 chars > limit: cut into 4000 + 1000)
    assert [s.location for s in segments] == [
        "lines 1-3",
        "line 5",
        "lines 7-9",
        "line 10",
        "line 10",
    ]
    assert segments[0].text == "a" * 1500 + "\n\n" + "b" * 1500
    assert segments[2].text == "d\nd\nd"
    assert "".join(s.text for s in segments[3:]) == "e" * 5000


def test_long_txt_is_split_and_keeps_every_paragraph(tmp_path: Path) -> None:
    paras = [f"第{i}段：" + "内容" * 300 for i in range(20)]  # ~605 chars each
    loaded = load_file(write(tmp_path, "long.txt", "\n\n".join(paras)))
    assert len(loaded.segments) > 1
    assert all(len(s.text) <= 4000 for s in loaded.segments)
    assert [p for s in loaded.segments for p in s.text.split("\n\n")] == paras
    assert loaded.segments[0].location == "lines 1-11"  # 6 paragraphs, blank lines between


def test_markdown_sections_by_heading_path(tmp_path: Path) -> None:
    md = (
        "导言文字。\n\n# 产品手册\n\n## 1 概述\n\n星河精密的数控机床。\n\n"
        "## 2 安装\n\n先接地。\n\n```bash\n# not a heading\nmake install\n```\n\n"
        "### 2.1 电源 ###\n\n380V 三相。\n\n附录\n====\n\n见官网。\n"
    )
    loaded = load_file(write(tmp_path, "manual.md", md))
    got = [(s.location, s.text) for s in loaded.segments]
    assert got == [
        ("before first heading", "导言文字。"),
        ("产品手册 > 1 概述", "## 1 概述\n\n星河精密的数控机床。"),
        (
            "产品手册 > 2 安装",
            "## 2 安装\n\n先接地。\n\n```bash\n# not a heading\nmake install\n```",
        ),
        ("产品手册 > 2 安装 > 2.1 电源", "### 2.1 电源\n\n380V 三相。"),
        ("附录", "# 附录\n\n见官网。"),
    ]


def test_html_keeps_headings_drops_script_nav_footer(tmp_path: Path) -> None:
    html = """<!DOCTYPE html><html><head><title>T</title><style>p{color:red}</style></head>
    <body><nav><a href="/">首页</a> | <a href="/x">产品</a></nav>
    <h1>产品手册</h1><p>欢迎使用 <b>星河</b>
    机床。</p><script>var secret = "do not index";</script>
    <h2>1 安装</h2><ul><li>接地</li><li>通电</li></ul>
    <table><tr><th>型号</th><th>功率</th></tr><tr><td>XH-100</td><td>5 kW</td></tr></table>
    <footer>© 2024 星河精密</footer></body></html>"""
    loaded = load_file(write(tmp_path, "p.html", html.encode("gb18030")))
    got = [(s.location, s.text) for s in loaded.segments]
    assert got == [
        ("产品手册", "# 产品手册\n\n欢迎使用 星河 机床。"),
        (
            "产品手册 > 1 安装",
            "## 1 安装\n\n- 接地\n\n- 通电\n\n| 型号 | 功率 |\n|---|---|\n| XH-100 | 5 kW |",
        ),
    ]
    everything = " ".join(s.text for s in loaded.segments)
    for gone in ("do not index", "color:red", "首页", "©"):
        assert gone not in everything


def test_markdown_table_escapes_and_pads() -> None:
    assert markdown_table([["a", "b|c"], ["1\n2"]]) == "| a | b\\|c |\n|---|---|\n| 1<br>2 |  |"
    assert markdown_table([]) == ""


# --- csv / tsv / xlsx -------------------------------------------------------------------


def test_csv_gbk_with_bad_row_and_quoted_newline(tmp_path: Path) -> None:
    csv_text = (
        '问题,答案\n如何重置密码？,"在设置页面\n点击重置。"\n坏行,多,一列\n\n保修多久？,12个月\n'
    )
    loaded = load_file(write(tmp_path, "qa.csv", csv_text.encode("gbk")))
    assert [(r.location, r.data) for r in loaded.rows] == [
        ("row 1", {"问题": "如何重置密码？", "答案": "在设置页面\n点击重置。"}),
        ("row 3", {"问题": "保修多久？", "答案": "12个月"}),
    ]
    assert loaded.problems == [("row 2", "line 4: 3 fields, the header has 2")]


def test_csv_sniffs_semicolons_and_tsv_uses_tabs(tmp_path: Path) -> None:
    semi = "name;city\n张三;北京\n李四;上海\n".encode("utf-8-sig")
    loaded = load_file(write(tmp_path, "people.csv", semi))
    assert [r.data for r in loaded.rows] == [
        {"name": "张三", "city": "北京"},
        {"name": "李四", "city": "上海"},
    ]
    tsv = "q\ta\tq\n1,5\t2\t3\n".encode("utf-16")
    loaded = load_file(write(tmp_path, "t.tsv", tsv))
    assert [(r.location, r.data) for r in loaded.rows] == [
        ("row 1", {"q": "1,5", "a": "2", "q (2)": "3"})
    ]
    assert "empty" in rejected(write(tmp_path, "blank.csv", "\n \n"))


def test_xlsx_every_sheet_with_excel_row_numbers(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "问答"
    ws["B2"], ws["C2"] = "问题", "答案"
    ws["B3"], ws["C3"] = "如何重置密码？", "在设置页面点击重置。"
    ws["B5"], ws["C5"] = "保修多久？", 12
    ws["E6"] = "stray"
    wb.create_sheet("空表")
    other = wb.create_sheet("Sheet3")
    other.append(["问题", "答案"])
    other.append(["电压？", None])
    wb.save(tmp_path / "qa.xlsx")
    loaded = load_file(tmp_path / "qa.xlsx")
    assert [(r.location, r.data) for r in loaded.rows] == [
        ("sheet 问答 row 3", {"问题": "如何重置密码？", "答案": "在设置页面点击重置。"}),
        ("sheet 问答 row 5", {"问题": "保修多久？", "答案": 12}),
        ("sheet Sheet3 row 2", {"问题": "电压？", "答案": None}),
    ]
    assert loaded.problems == [("sheet 问答 row 6", "1 value(s) outside the header's columns")]
    assert "corrupt" in rejected(write(tmp_path, "bad.xlsx", b"PK\x03\x04 not really a zip"))


# --- json / jsonl -----------------------------------------------------------------------


def test_json_shapes(tmp_path: Path) -> None:
    items = [{"q": "你好", "a": "您好"}, {"q": "再见", "a": "再会"}]
    loaded = load_file(write(tmp_path, "a.json", json.dumps(items + [3], ensure_ascii=False)))
    assert [(r.location, r.data) for r in loaded.rows] == [
        ("item 1", items[0]),
        ("item 2", items[1]),
    ]
    assert loaded.problems == [("item 3", "not a JSON object but a number")]
    wrapped = load_file(write(tmp_path, "b.json", json.dumps({"data": items, "total": 2})))
    assert [r.data for r in wrapped.rows] == items
    single = load_file(write(tmp_path, "c.json", json.dumps({"q": "x", "tags": ["a"]})))
    assert [(r.location, r.data) for r in single.rows] == [
        ("whole file", {"q": "x", "tags": ["a"]})
    ]
    assert "invalid JSON" in rejected(write(tmp_path, "d.json", '{"a": 1,,}'))
    assert "top level is a string" in rejected(write(tmp_path, "e.json", '"just text"'))


def test_jsonl_malformed_line_reported_rest_kept(tmp_path: Path) -> None:
    lines = ['{"text": "第一行"}', "", '{"text": "broken"', "[1, 2]", '{"text": "第五行"}', ""]
    loaded = load_file(write(tmp_path, "a.jsonl", "\n".join(lines).encode("gb18030")))
    assert [(r.location, r.data) for r in loaded.rows] == [
        ("line 1", {"text": "第一行"}),
        ("line 5", {"text": "第五行"}),
    ]
    locations = [where for where, _ in loaded.problems]
    assert locations == ["line 3", "line 4"]
    assert loaded.problems[0][1].startswith("invalid JSON: Expecting ',' delimiter")
    assert loaded.problems[1][1] == "not a JSON object but an array"
    reason = rejected(write(tmp_path, "all_bad.jsonl", "{oops\nnope\n"))
    assert reason.startswith("no usable content: 2 part(s) skipped, first at line 1")


# --- PDF --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cjk_font() -> str:
    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    return "STSong-Light"


def make_pdf(pages: list[list[str]], font: str = "Helvetica", header: bool = True) -> bytes:
    """A PDF whose page i has a running header and a "第 i 页" footer around `pages[i]`."""
    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    for number, body in enumerate(pages, 1):
        c.setFont(font, 10)
        if header:
            c.drawString(72, 800, "星河精密 内部资料" if font != "Helvetica" else "XH Internal")
            footer = (
                f"星河精密 内部资料 第 {number} 页" if font != "Helvetica" else f"Page {number}"
            )
            c.drawString(72, 40, footer)
        c.setFont(font, 12)
        for k, line in enumerate(body):
            c.drawString(72, 700 - 20 * k, line)
        c.showPage()
    c.save()
    return buf.getvalue()


def test_pdf_pages_without_running_header_footer(tmp_path: Path, cjk_font: str) -> None:
    # Chapter numbers do not follow page numbers, so they are body text, not running lines.
    chapters = ["一", "二", "三", "三"]
    bodies = [
        [f"第{c}章 安装说明", "设备需要可靠接地。", f"Model XH-{n}00"]
        for n, c in enumerate(chapters, 1)
    ]
    loaded = load_file(write(tmp_path, "m.pdf", make_pdf(bodies, cjk_font)))
    assert [(s.location, s.text) for s in loaded.segments] == [
        (f"page {n}", "\n".join(body)) for n, body in enumerate(bodies, 1)
    ]


def test_pdf_english_and_empty_password(tmp_path: Path) -> None:
    data = make_pdf([["Alpha body"], ["Beta body"], ["Gamma body"]])
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    loaded = load_file(write(tmp_path, "open.pdf", out.getvalue()))
    assert [s.text for s in loaded.segments] == ["Alpha body", "Beta body", "Gamma body"]


def test_pdf_rejections(tmp_path: Path) -> None:
    data = make_pdf([["secret"], ["more"], ["text"]])
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password="pw", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    assert "encrypted" in rejected(write(tmp_path, "locked.pdf", out.getvalue()))
    assert "corrupt or truncated" in rejected(write(tmp_path, "cut.pdf", data[: len(data) // 2]))
    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    c.rect(50, 50, 300, 300, fill=1)  # a "scan": drawing only, no text layer
    c.showPage()
    c.save()
    assert "no text layer" in rejected(write(tmp_path, "scan.pdf", buf.getvalue()))


def test_strip_running_lines_needs_half_the_pages() -> None:
    pages = [(n, ["Report 2024", f"item {n * n}", f"- {n + 1} -"]) for n in range(1, 6)]
    pages[3] = (4, ["Another first line", "item 16", "- 5 -"])
    stripped = dict(strip_running_lines(pages, 5))
    # "Report 2024" on 4 of 5 pages, "- N+1 -" follows the page number: both removed;
    # "item N*N" has a number that does not move with the page: kept.
    assert stripped == {1: ["item 1"], 2: ["item 4"], 3: ["item 9"], 5: ["item 25"]} | {
        4: ["Another first line", "item 16"]
    }
    # Only 2 of 5 pages share the line: not a running header.
    few = [(n, [f"x{n * n}" if n > 2 else "Draft", f"text {n * n}"]) for n in range(1, 6)]
    assert strip_running_lines(few, 5) == few
    # Fewer than 3 pages: nothing is removed.
    two = [(1, ["H", "a"]), (2, ["H", "b"])]
    assert strip_running_lines(two, 2) == two


# --- Word -------------------------------------------------------------------------------


def test_docx_heading_sections_and_markdown_table(tmp_path: Path) -> None:
    d = docx.Document()
    d.add_paragraph("封面说明")
    d.add_heading("星河精密", level=0)  # the "Title" style: root of every heading path
    d.add_heading("产品手册", level=1)
    d.add_heading("1 规格", level=2)
    d.add_paragraph("主要参数如下：")
    table = d.add_table(rows=2, cols=2)
    for (r, c), value in {(0, 0): "型号", (0, 1): "功率", (1, 0): "XH-100", (1, 1): "5 kW"}.items():
        table.cell(r, c).text = value
    d.add_paragraph("以上为标准配置。")
    zh_style = d.styles.add_style("标题 1", WD_STYLE_TYPE.PARAGRAPH)
    d.add_paragraph("附录", style=zh_style)
    d.add_paragraph("联系售后。")
    d.save(tmp_path / "m.docx")
    loaded = load_file(tmp_path / "m.docx")
    assert [(s.location, s.text) for s in loaded.segments] == [
        ("before first heading", "封面说明"),
        (
            "星河精密 > 产品手册 > 1 规格",
            "## 1 规格\n\n主要参数如下：\n\n| 型号 | 功率 |\n|---|---|\n| XH-100 | 5 kW |"
            "\n\n以上为标准配置。",
        ),
        ("星河精密 > 附录", "# 附录\n\n联系售后。"),
    ]


def test_docx_rejections(tmp_path: Path, make_doc) -> None:
    assert "corrupt .docx" in rejected(write(tmp_path, "bad.docx", b"PK\x03\x04garbage"))
    assert "corrupt .docx" in rejected(write(tmp_path, "text.docx", "plain text"))
    old = make_doc("old.doc", ["x"]).read_bytes()
    assert "rename it to .doc" in rejected(write(tmp_path, "old.docx", old))


@pytest.mark.skipif(shutil.which("antiword") is None, reason="antiword not installed")
def test_doc_via_antiword_keeps_chinese(make_doc) -> None:
    paras = ["产品手册", "第一章 安装说明：请先关闭电源。", "Warranty: 12 months."]
    loaded = load_file(make_doc("manual.doc", paras))
    assert [(s.location, s.text) for s in loaded.segments] == [("whole file", "\n".join(paras))]


def test_doc_rejections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_doc) -> None:
    if shutil.which("antiword"):
        assert "RTF" in rejected(write(tmp_path, "a.doc", r"{\rtf1\ansi hello}"))
        assert "not a Word 97-2003" in rejected(write(tmp_path, "b.doc", "hello " * 200))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "apt-get install antiword" in rejected(make_doc("c.doc", ["x"]))


# --- load_file --------------------------------------------------------------------------


def test_load_file_rejects_unsupported_and_empty(tmp_path: Path) -> None:
    reason = rejected(write(tmp_path, "slides.pptx", b"PK"))
    assert ".pptx" in reason and ".docx" in reason and ".jsonl" in reason
    assert "empty" in rejected(write(tmp_path, "zero.pdf", b""))
    assert "empty" in rejected(write(tmp_path, "blank.txt", "  \n\n "))
    assert "empty" in rejected(write(tmp_path, "blank.md", "\n"))
    assert "cannot read" in rejected(tmp_path / "missing.txt")


def test_load_file_wraps_parser_crashes_and_suffix_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "UPPER.TXT", "hello")
    assert load_file(path).segments[0].text == "hello"

    def boom(_: Path) -> str:
        raise KeyError("xref")

    monkeypatch.setattr(text_loader, "read_text", boom)
    assert rejected(path) == "could not read this .txt file: KeyError: 'xref'"


def test_registry_lists_every_required_format() -> None:
    required = ".txt .md .html .htm .csv .tsv .json .jsonl .pdf .docx .doc .xlsx".split()
    assert set(required) <= set(SUPPORTED_SUFFIXES)
    assert SUPPORTED_SUFFIXES == sorted(SUPPORTED_SUFFIXES) == LOADERS.names()
