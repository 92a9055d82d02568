"""Generate luodi's sample enterprise data (星河精密) and its ground truth, deterministically.

    .venv/bin/python examples/make_examples.py            # examples/xinghe/, ground_truth.json
    .venv/bin/python examples/make_examples.py --out DIR  # DIR/xinghe/, DIR/ground_truth.json

The generated files are committed, so `luodi demo` and the tests never need to run this; it
documents how they were made and can rebuild them. Running it twice gives byte-identical files:
text files have no dates, and the Office/PDF files get fixed timestamps (zip entry dates and
docProps/core.xml for .docx/.xlsx, reportlab's `invariant` mode and a fixed file ID for PDFs;
the Word 97 .doc writer in word97.py has no timestamps at all). Content lives in
xinghe_company.py (names, contacts, planted PII), xinghe_docs.py (handbook, manual),
xinghe_pages.py (md, html, notices), xinghe_rows.py (FAQ, feedback, tickets) and, for the one
.doc notice, SHUTTLE_NOTICE below.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import re
import sys
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the content modules sit beside this script

import xinghe_company as co  # noqa: E402
import xinghe_pages as pages  # noqa: E402
import xinghe_rows as rows  # noqa: E402
from docx import Document  # noqa: E402
from docx.oxml.ns import qn  # noqa: E402
from docx.shared import Pt  # noqa: E402
from ground_truth import build_ground_truth  # noqa: E402
from openpyxl import Workbook  # noqa: E402
from openpyxl.styles import Alignment, Font  # noqa: E402
from pypdf import PdfWriter  # noqa: E402
from pypdf.generic import ArrayObject, ByteStringObject  # noqa: E402
from reportlab.lib import colors  # noqa: E402
from reportlab.lib.pagesizes import A4  # noqa: E402
from reportlab.lib.styles import ParagraphStyle  # noqa: E402
from reportlab.lib.units import mm  # noqa: E402
from reportlab.pdfbase import pdfmetrics  # noqa: E402
from reportlab.pdfbase.cidfonts import UnicodeCIDFont  # noqa: E402
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle  # noqa: E402
from word97 import write_word97  # noqa: E402
from xinghe_docs import HANDBOOK, HANDBOOK_TITLE, MANUAL, MANUAL_TITLE, Block  # noqa: E402

FIXED_TIME = datetime(2025, 1, 1, 8, 0, 0)
ZIP_TIME = (2025, 1, 1, 8, 0, 0)
PDF_FONT = "STSong-Light"
ENCRYPTED_PASSWORD = "xinghe2025"

SHUTTLE_NOTICE_PATH = "corpus/notice_shuttle_canteen.doc"
SHUTTLE_NOTICE = [
    "关于调整员工班车线路及食堂就餐时间的通知 Notice on shuttle bus routes and canteen hours",
    "各部门：",
    "自 2025 年 6 月 3 日起，公司调整员工班车线路和食堂就餐时间，具体如下。"
    "From 3 June 2025 the staff shuttle bus routes and canteen hours change as follows.",
    "一、班车线路：新增星河产业园至轨道交通 4 号线红庄站线路，早班 7:20、晚班 17:40 发车。"
    "Shuttle bus: a new route to Metro Line 4 Hongzhuang Station leaves at 7:20 and 17:40.",
    "二、食堂就餐：午餐 11:30—12:30 分两批就餐，生产部门先行；夜班加餐 22:00 在一号楼食堂供应。"
    "Canteen: lunch is served 11:30-12:30 in two sittings, production first; "
    "the night-shift meal is at 22:00 in the Building 1 canteen.",
    "三、乘车和就餐均须刷工牌，工牌遗失请到行政部补办。"
    "Show your staff badge on the bus and in the canteen; report a lost badge to Administration.",
    f"班车临时变动请联系行政部班车调度孙师傅，手机 {co.SHUTTLE_MOBILE}。"
    "For last-minute bus changes call the dispatcher, Mr. Sun, on the mobile number above.",
    "星河精密制造有限公司 行政部",
    "2025 年 5 月 26 日",
    co.BOILERPLATE,
]
"""The Word 97 notice, one string per paragraph (Word has no line breaks inside them here)."""

Texts = dict[str, str]
"""Relative path -> the plain text written into that file (what ground truth is computed from)."""


def blocks_text(title: str, blocks: list[Block]) -> str:
    """The plain text of a block document (title, headings, paragraphs, bullets, table cells)."""
    out = [title]
    for kind, value in blocks:
        if kind == "table":
            out.extend(" ".join(r) for r in value)  # type: ignore[union-attr]
        elif kind == "bullets":
            out.extend(value)  # type: ignore[arg-type]
        else:
            out.append(str(value))
    return "\n".join(out)


def normalize_zip(path: Path, core_time: str = "2025-01-01T08:00:00Z") -> None:
    """Rewrite an OOXML zip with fixed entry dates and fixed docProps/core.xml timestamps."""
    with zipfile.ZipFile(path) as zin:
        entries = [(i.filename, zin.read(i.filename)) for i in zin.infolist()]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in entries:
            if name == "docProps/core.xml":
                text = data.decode("utf-8")
                # openpyxl stamps `modified` with the save time whatever the properties say
                text = re.sub(
                    r"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:\2>)",
                    rf"\g<1>{core_time}\g<3>",
                    text,
                )
                data = text.encode("utf-8")
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zout.writestr(info, data)
    path.write_bytes(buf.getvalue())


def write_docx(path: Path, title: str, blocks: list[Block]) -> None:
    """Render blocks as a Word document with Heading 1/2 styles, bullets and grid tables."""
    doc = Document()
    normal = doc.styles["Normal"]
    normal.font.name = "Times New Roman"
    normal.font.size = Pt(10.5)
    # East Asian text takes its font from w:eastAsia, which python-docx does not expose
    normal.element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), "宋体")
    doc.sections[0].header.paragraphs[0].text = f"{co.COMPANY_ZH} 员工手册"
    doc.add_heading(title, level=0)
    for kind, value in blocks:
        if kind == "h1":
            doc.add_heading(str(value), level=1)
        elif kind == "h2":
            doc.add_heading(str(value), level=2)
        elif kind == "p":
            doc.add_paragraph(str(value))
        elif kind == "bullets":
            for item in value:  # type: ignore[union-attr]
                # numbered steps carry their own numbers; Word's auto numbering would repeat them
                doc.add_paragraph(item, style=None if item[0].isdigit() else "List Bullet")
        elif kind == "table":
            table_rows: list[list[str]] = value  # type: ignore[assignment]
            table = doc.add_table(rows=len(table_rows), cols=len(table_rows[0]))
            table.style = "Table Grid"
            for r, cells in enumerate(table_rows):
                for c, cell in enumerate(cells):
                    table.cell(r, c).text = cell
    props = doc.core_properties
    props.title = title
    props.author = f"{co.SHORT_ZH} 人力资源部"
    props.last_modified_by = f"{co.SHORT_ZH} 人力资源部"
    props.created = props.modified = props.last_printed = FIXED_TIME
    props.revision = 1
    doc.save(str(path))
    normalize_zip(path)


def _pdf_styles() -> dict[str, ParagraphStyle]:
    """Paragraph styles using the CID font, wrapping CJK text anywhere between characters."""
    if PDF_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(PDF_FONT))
    base = {"fontName": PDF_FONT, "wordWrap": "CJK"}
    return {
        "title": ParagraphStyle("title", fontSize=17, leading=24, spaceAfter=10, **base),
        "h1": ParagraphStyle("h1", fontSize=14, leading=20, spaceBefore=10, spaceAfter=6, **base),
        "h2": ParagraphStyle("h2", fontSize=12, leading=17, spaceBefore=6, spaceAfter=4, **base),
        "p": ParagraphStyle("p", fontSize=10.5, leading=16, spaceAfter=5, **base),
        "cell": ParagraphStyle("cell", fontSize=9.5, leading=13, **base),
    }


def _running_header_footer(canvas, doc) -> None:  # noqa: ANN001 - reportlab callback signature
    """Draw the running header and the page-numbered footer on every page."""
    width, height = A4
    canvas.saveState()
    canvas.setFont(PDF_FONT, 9)
    canvas.drawString(20 * mm, height - 12 * mm, co.PDF_HEADER)
    canvas.line(20 * mm, height - 14 * mm, width - 20 * mm, height - 14 * mm)
    canvas.drawCentredString(width / 2, 10 * mm, f"星河精密 XH-CNC-500 使用手册 | 第 {doc.page} 页")
    canvas.restoreState()


def write_pdf(path: Path, title: str, blocks: list[Block]) -> None:
    """Render blocks as an A4 PDF with a running header and a numbered footer on each page."""
    st = _pdf_styles()
    story: list = [Paragraph(title, st["title"])]
    for kind, value in blocks:
        if kind in ("h1", "h2", "p"):
            story.append(Paragraph(str(value), st[kind]))
        elif kind == "bullets":
            for item in value:  # type: ignore[union-attr]
                story.append(Paragraph(item if item[0].isdigit() else f"• {item}", st["p"]))
        elif kind == "table":
            data = [[Paragraph(c, st["cell"]) for c in r] for r in value]  # type: ignore[union-attr]
            ncol = len(data[0])
            table = Table(data, colWidths=[170 * mm / ncol] * ncol, repeatRows=1)
            table.setStyle(
                TableStyle(
                    [
                        ("GRID", (0, 0), (-1, -1), 0.5, colors.grey),
                        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef7")),
                        ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ]
                )
            )
            story.extend([table, Spacer(1, 6)])
    doc = SimpleDocTemplate(
        str(path),
        pagesize=A4,
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=22 * mm,
        bottomMargin=20 * mm,
        title=title,
        author=co.COMPANY_EN,
        creator="luodi examples/make_examples.py",
        invariant=1,
    )
    doc.build(story, onFirstPage=_running_header_footer, onLaterPages=_running_header_footer)


def write_encrypted_pdf(path: Path, source: Path) -> None:
    """Copy the first page of `source` into a password-protected PDF (RC4-128, no AES needed)."""
    writer = PdfWriter()
    writer.add_page(PdfWriter(clone_from=str(source)).pages[0])
    # pypdf draws a random file ID (the RC4 key depends on it); pin it for reproducible bytes
    file_id = ByteStringObject(hashlib.md5(b"xinghe-encrypted").digest())
    writer._ID = ArrayObject([file_id, file_id])
    writer.generate_file_identifiers = lambda: None  # type: ignore[method-assign]
    writer.encrypt(ENCRYPTED_PASSWORD, algorithm="RC4-128")
    with path.open("wb") as fh:
        writer.write(fh)


def write_xlsx(path: Path, faq: list[tuple[str, str, str]]) -> None:
    """The FAQ workbook: one sheet 常见问题 with columns 问题 / 答案 / 类别."""
    wb = Workbook()
    ws = wb.active
    ws.title = "常见问题"
    ws.append(["问题", "答案", "类别"])
    for q, a, c in faq:
        ws.append([q, a or None, c])  # an empty answer is an empty cell, as Excel saves it
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for col, width in (("A", 42), ("B", 70), ("C", 10)):
        ws.column_dimensions[col].width = width
    for row in ws.iter_rows(min_row=2):
        row[1].alignment = Alignment(wrap_text=True, vertical="top")
    wb.properties.creator = f"{co.SHORT_ZH} 客户服务部"
    wb.properties.created = wb.properties.modified = FIXED_TIME
    wb.save(str(path))
    normalize_zip(path)


def csv_text(header: list[str], table: list[tuple]) -> str:
    """CSV text with CRLF line ends (what Excel writes), quoting only where needed."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(table)
    return buf.getvalue()


def feedback_lines(items: list[tuple[str, str, object, str, str]]) -> list[str]:
    """JSON lines {prompt, response, rating, time, user}; rating None stays null, 'absent' goes."""
    out = []
    for prompt, response, rating, time, user in items:
        rec: dict[str, object] = {"prompt": prompt, "response": response}
        if rating != "absent":
            rec["rating"] = rating
        rec.update(time=time, user=user)
        out.append(json.dumps(rec, ensure_ascii=False))
    return out


def ticket_rows() -> list[tuple[str, str, str]]:
    """(text, label, time): tickets in a fixed shuffled order, one every ~3 days of H1 2025."""
    labeled = (
        [(t, "设备故障") for t in rows.TICKETS_FAULT]
        + [(t, "售后") for t in rows.TICKETS_SERVICE]
        + [(t, "账单") for t in rows.TICKETS_BILLING]
        + [(t, "其他") for t in rows.TICKETS_OTHER]
    )
    # a content hash gives an order that looks random but never changes between runs
    labeled.sort(key=lambda tl: hashlib.sha256(tl[0].encode()).hexdigest())
    base = datetime(2025, 1, 2, 9, 0)  # naive on purpose: local time zones must not matter
    fmt = "%Y-%m-%dT%H:%M:%S+08:00"
    out = []
    for i, (text, label) in enumerate(labeled):
        ts = base + timedelta(days=3 * i, minutes=i * 7919 % 480)
        out.append((text, label, ts.strftime(fmt)))
    # the same ticket submitted twice, a day after the last one
    again = base + timedelta(days=3 * (len(labeled) - 1) + 1, hours=2)
    out.append((out[10][0], out[10][1], again.strftime(fmt)))
    return out


def write_text(path: Path, text: str, encoding: str) -> bytes:
    """Write `text` in `encoding` ('utf-16' means little-endian with BOM on every platform)."""
    if encoding == "utf-16":
        data = b"\xff\xfe" + text.encode("utf-16-le")
    else:
        data = text.encode(encoding)
    path.write_bytes(data)
    return data


def generate(out: Path) -> dict:
    """Write every sample file under out/xinghe and out/ground_truth.json; returns the truth."""
    root = out / "xinghe"
    for sub in ("handbook", "manuals", "faq", "feedback", "tickets", "corpus", "bad"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    texts: Texts = {}

    write_docx(root / "handbook/employee_handbook.docx", HANDBOOK_TITLE, HANDBOOK)
    texts["handbook/employee_handbook.docx"] = blocks_text(HANDBOOK_TITLE, HANDBOOK)

    pdf = root / "manuals/xh-cnc-500_manual.pdf"
    write_pdf(pdf, MANUAL_TITLE, MANUAL)
    texts["manuals/xh-cnc-500_manual.pdf"] = blocks_text(MANUAL_TITLE, MANUAL)
    for name, content in (
        ("manuals/xh-s200_quickstart.md", pages.SENSOR_MD),
        ("manuals/xh-s200_troubleshooting.html", pages.SENSOR_HTML),
    ):
        write_text(root / name, content, "utf-8")
        texts[name] = content

    write_xlsx(root / "faq/faq.xlsx", rows.FAQ_ROWS)
    texts["faq/faq.xlsx"] = "\n".join(" ".join(r) for r in rows.FAQ_ROWS)
    faq_csv = csv_text(["question", "answer", "category"], rows.CSV_ROWS)
    write_text(root / "faq/faq_gbk.csv", faq_csv, "gbk")
    texts["faq/faq_gbk.csv"] = faq_csv

    stars = feedback_lines(rows.STARS)
    stars.append(stars[rows.STARS_DUPLICATE_OF])
    thumbs = feedback_lines(rows.THUMBS)
    thumbs.insert(rows.THUMBS_MALFORMED_AFTER, rows.THUMBS_MALFORMED)
    for name, lines in (
        ("feedback/feedback_stars.jsonl", stars),
        ("feedback/feedback_thumbs.jsonl", thumbs),
    ):
        content = "\n".join(lines) + "\n"
        write_text(root / name, content, "utf-8")
        texts[name] = content

    tickets = ticket_rows()
    content = csv_text(["text", "label", "time"], tickets)
    write_text(root / "tickets/tickets.csv", content, "utf-8")
    texts["tickets/tickets.csv"] = content

    for name, (encoding, content) in pages.NOTICES.items():
        if encoding == "gbk":
            content = content.replace("\n", "\r\n")  # GBK files come from Windows: CRLF
        write_text(root / "corpus" / name, content, encoding)
        texts[f"corpus/{name}"] = content
    write_word97(root / SHUTTLE_NOTICE_PATH, SHUTTLE_NOTICE)
    texts[SHUTTLE_NOTICE_PATH] = "\n".join(SHUTTLE_NOTICE)

    (root / "bad/empty.txt").write_bytes(b"")
    pdf_bytes = pdf.read_bytes()
    (root / "bad/corrupt.pdf").write_bytes(pdf_bytes[: len(pdf_bytes) * 2 // 5])
    write_encrypted_pdf(root / "bad/encrypted.pdf", pdf)
    (root / "bad/slides.pptx").write_bytes(
        b"PK\x03\x04 fake PowerPoint deck: .pptx is not a format luodi ingests\n"
    )
    docx_bytes = (root / "handbook/employee_handbook.docx").read_bytes()
    (root / "bad/corrupt.docx").write_bytes(docx_bytes[: len(docx_bytes) // 2])

    truth = build_ground_truth(texts, tickets, stars, thumbs, ENCRYPTED_PASSWORD)
    (out / "ground_truth.json").write_text(
        json.dumps(truth, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    return truth


def main(argv: list[str] | None = None) -> None:
    """Command line: regenerate the sample data into --out (default: this folder)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE, help="folder to write xinghe/ into")
    args = ap.parse_args(argv)
    generate(args.out)
    total = sum(p.stat().st_size for p in (args.out / "xinghe").rglob("*") if p.is_file())
    print(f"wrote {args.out / 'xinghe'} ({total / 1024:.0f} KiB) and ground_truth.json")


if __name__ == "__main__":
    main()
