"""The committed sample data (examples/xinghe) opens, decodes, matches its ground truth, and
is exactly what examples/make_examples.py generates."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import docx
import openpyxl
import pypdf
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ROOT = EXAMPLES / "xinghe"
TRUTH = json.loads((EXAMPLES / "ground_truth.json").read_text(encoding="utf-8"))
BINARY_FORMATS = {"docx", "pdf", "xlsx", "doc"}
ENCODINGS = {
    f["path"]: f.get("encoding", "utf-8")
    for f in TRUTH["files"]
    if f["format"] not in BINARY_FORMATS
}
ANTIWORD = shutil.which("antiword")
DOCS = [f["path"] for f in TRUTH["files"] if f["format"] == "doc"]


def load_example_module(name: str) -> ModuleType:
    """Import examples/<name>.py by path, leaving sys.path as it was (make_examples edits it)."""
    saved = list(sys.path)
    try:
        spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


def antiword_text(path: Path) -> str:
    """What the .doc loader sees: antiword's UTF-8 output, one paragraph per line."""
    assert ANTIWORD is not None
    done = subprocess.run(
        [ANTIWORD, "-m", "UTF-8.txt", "-w", "0", str(path)], capture_output=True, check=True
    )
    return done.stdout.decode("utf-8")


def id_checksum_ok(number: str) -> bool:
    """GB 11643 resident ID: 17 digits then the ISO 7064 MOD 11-2 check character."""
    if not re.fullmatch(r"\d{17}[\dX]", number):
        return False
    weights = [2 ** (17 - i) % 11 for i in range(17)]  # the standard's weights, derived
    return (
        "10X98765432"[sum(int(d) * w for d, w in zip(number[:17], weights, strict=True)) % 11]
        == number[17]
    )


def luhn_ok(number: str) -> bool:
    """Luhn: double every second digit from the right; the sum is a multiple of 10."""
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def decode(path: str) -> str:
    """A text file of the sample data decoded with its declared encoding."""
    data = (ROOT / path).read_bytes()
    enc = ENCODINGS.get(path, "utf-8")
    if enc == "utf-16":
        assert data[:2] == b"\xff\xfe", f"{path} lacks its UTF-16 LE BOM"
    return data.decode(enc)


def text_of(path: str) -> str:
    """All text of a sample file as its own library reads it."""
    p = ROOT / path
    if p.suffix == ".docx":
        d = docx.Document(str(p))
        cells = [c.text for t in d.tables for r in t.rows for c in r.cells]
        return "\n".join([para.text for para in d.paragraphs] + cells)
    if p.suffix == ".pdf":
        return "\n".join(page.extract_text() for page in pypdf.PdfReader(str(p)).pages)
    if p.suffix == ".xlsx":
        ws = openpyxl.load_workbook(str(p), read_only=True).active
        return "\n".join(str(v) for row in ws.iter_rows(values_only=True) for v in row if v)
    if p.suffix == ".doc":
        return antiword_text(p)
    return decode(path)


def table_rows(path: str) -> list[tuple]:
    """Data rows (header dropped) of the FAQ workbook or a csv, as tuples of strings."""
    if path.endswith(".xlsx"):
        ws = openpyxl.load_workbook(str(ROOT / path), read_only=True).active
        rows = [tuple(v or "" for v in r) for r in ws.iter_rows(values_only=True)]
    else:
        rows = [tuple(r) for r in csv.reader(io.StringIO(decode(path)))]
    return rows[1:]


def test_check_digit_helpers_agree_with_published_examples():
    # GB 11643's own example number, and the textbook Luhn example
    assert id_checksum_ok("11010519491231002X")
    assert not id_checksum_ok("110105194912310021")
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")


def test_planted_ids_and_cards_are_valid():
    ids = [p["value"] for p in TRUTH["pii"] if p["type"] == "resident_id"]
    cards = [p["value"] for p in TRUTH["pii"] if p["type"] == "bank_card"]
    assert len(ids) == 2 and any(v.endswith("X") for v in ids)
    assert all(id_checksum_ok(v) for v in ids)
    assert cards and all(luhn_ok(v) and 16 <= len(v) <= 19 for v in cards)
    mobiles = [p["value"] for p in TRUTH["pii"] if p["type"] == "mobile"]
    assert all(re.fullmatch(r"1[3-9]\d{9}", m) for m in mobiles)


def test_every_listed_file_exists_and_the_set_is_small():
    listed = [f["path"] for f in TRUTH["files"]] + [b["file"] for b in TRUTH["bad_files"]]
    on_disk = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file())
    assert sorted(listed) == on_disk
    assert sum((ROOT / p).stat().st_size for p in on_disk) < 1_000_000


def test_handbook_docx_structure():
    d = docx.Document(str(ROOT / "handbook/employee_handbook.docx"))
    styles = [p.style.name for p in d.paragraphs]
    assert styles.count("Heading 1") >= 9 and styles.count("Heading 2") >= 10
    leave = d.tables[0]
    assert leave.cell(0, 0).text == "假期类型 Leave type"
    assert any("婚假" in leave.cell(r, 0).text for r in range(len(leave.rows)))
    assert sum(len(p.text) for p in d.paragraphs) > 3000  # a few pages of text
    assert d.core_properties.created.year == 2025  # pinned, not the generation time


def test_manual_pdf_has_running_header_and_numbered_footer_on_every_page():
    reader = pypdf.PdfReader(str(ROOT / "manuals/xh-cnc-500_manual.pdf"))
    assert len(reader.pages) >= 3
    for n, page in enumerate(reader.pages, 1):
        lines = page.extract_text().splitlines()
        assert "星河精密 XH-CNC-500 使用手册 | User Manual" in lines
        assert f"星河精密 XH-CNC-500 使用手册 | 第 {n} 页" in lines
        footer = next(b for b in TRUTH["boilerplate"] if "regex" in b)["regex"]
        assert sum(bool(re.match(footer, line)) for line in lines) == 1
    text = text_of("manuals/xh-cnc-500_manual.pdf")
    assert "主轴最高转速 Max spindle speed" in text and "AL-310" in text


def test_faq_workbook_and_gbk_csv():
    rows = table_rows("faq/faq.xlsx")
    ws = openpyxl.load_workbook(str(ROOT / "faq/faq.xlsx"), read_only=True).active
    assert next(ws.iter_rows(values_only=True)) == ("问题", "答案", "类别")
    assert len(rows) == TRUTH["faq"]["rows"] == 40
    empty = TRUTH["faq"]["empty_answer"]
    assert rows[empty["row"] - 1][0] == empty["question"] and rows[empty["row"] - 1][1] == ""
    html = rows[TRUTH["faq"]["html_answer"]["row"] - 1][1]
    assert all(tag in html for tag in TRUTH["faq"]["html_answer"]["tags"])
    raw = (ROOT / "faq/faq_gbk.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    text = raw.decode("gbk")
    assert text.startswith("question,answer,category\r\n")
    assert len(table_rows("faq/faq_gbk.csv")) == TRUTH["faq"]["csv_rows"]


def test_text_encodings_are_as_declared():
    seen = set()
    for path, enc in ENCODINGS.items():
        if not path.startswith("corpus/"):
            continue
        raw = (ROOT / path).read_bytes()
        seen.add(enc)
        if enc == "gbk":
            with pytest.raises(UnicodeDecodeError):
                raw.decode("utf-8")
            assert b"\r\n" in raw
        elif enc == "utf-8-sig":
            assert raw.startswith(b"\xef\xbb\xbf")
        elif enc == "utf-8":
            assert not raw.startswith(b"\xef\xbb\xbf")
        assert "星河" in decode(path) or "noise" in path
    assert seen == {"utf-8", "gbk", "utf-16", "utf-8-sig"}


def test_pii_allowlist_and_boilerplate_occur_where_ground_truth_says():
    cache: dict[str, str] = {}

    def get(path: str) -> str:
        if path not in cache:
            cache[path] = text_of(path)
        return cache[path]

    def readable(path: str) -> bool:
        return ANTIWORD is not None or not path.endswith(".doc")  # .doc needs antiword

    for item in TRUTH["pii"] + TRUTH["allowlist"]:
        assert item["files"], f"{item['value']} is planted nowhere"
        for path in filter(readable, item["files"]):
            assert item["value"] in get(path), f"{item['value']} not in {path}"
    for item in TRUTH["boilerplate"]:
        for path in filter(readable, item["files"]):
            text = get(path)
            if "line" in item:
                assert item["line"] in text.splitlines(), (item["line"], path)
            else:
                assert re.search(item["regex"], text, re.M)
    # the allowlisted contacts are company-wide; personal data is not repeated everywhere
    assert len(TRUTH["allowlist"][0]["files"]) >= 8


def test_word97_notice_is_a_word_document_holding_the_notice_text():
    notice = load_example_module("make_examples").SHUTTLE_NOTICE
    assert DOCS == ["corpus/notice_shuttle_canteen.doc"]
    raw = (ROOT / DOCS[0]).read_bytes()
    assert raw[:8] == bytes.fromhex("D0CF11E0A1B11AE1")  # OLE2 compound file
    # sector 0 is the FAT, sector 1 the directory; WordDocument starts at sector 2 (file
    # offset 512 * 3) with the FIB: wIdent 0xA5EC, nFib 0xC1 (Word 97), lid 0x0804 (zh-CN)
    word = 512 * 3
    assert struct.unpack_from("<HHHH", raw, word) == (0xA5EC, 0xC1, 0, 0x0804)
    ccp = struct.unpack_from("<I", raw, word + 0x4C)[0]
    text = raw[word + 0x400 : word + 0x400 + 2 * ccp].decode("utf-16-le")
    assert text == "".join(p + "\r" for p in notice)
    assert notice[-1] == TRUTH["boilerplate"][0]["line"]
    planted = [p["value"] for p in TRUTH["pii"] if DOCS[0] in p["files"]]
    assert len(planted) == 1 and re.fullmatch(r"1[3-9]\d{9}", planted[0])
    assert sum(planted[0] in p for p in notice) == 1
    assert 5 <= len(notice) <= 10
    bilingual = [
        p for p in notice if re.search(r"[\u4e00-\u9fff]", p) and re.search(r"\w+ \w+ \w+", p)
    ]
    assert len(bilingual) >= 3


@pytest.mark.skipif(ANTIWORD is None, reason="antiword not installed")
def test_word97_notice_reads_back_through_antiword():
    notice = load_example_module("make_examples").SHUTTLE_NOTICE
    # antiword prints one line per paragraph, after a leading blank line
    assert antiword_text(ROOT / DOCS[0]).strip("\n").split("\n") == notice


@pytest.mark.skipif(ANTIWORD is None, reason="antiword not installed")
def test_word97_writer_round_trips(tmp_path):
    word97 = load_example_module("word97")
    paras = ["标题 Title", "", "全角（括号）and ASCII 123", "末段"]
    a = word97.write_word97(tmp_path / "a.doc", paras)
    assert a.read_bytes() == word97.word97_bytes(paras)  # no clock, no randomness
    assert antiword_text(a).strip("\n").split("\n") == paras


def test_word97_writer_rejects_what_it_cannot_write():
    word97 = load_example_module("word97")
    with pytest.raises(ValueError, match="must not contain"):
        word97.word97_bytes(["two\nlines"])
    word97.word97_bytes(["x" * (word97.MAX_CODE_UNITS - 1)])  # + the paragraph mark: full
    with pytest.raises(ValueError, match="too long"):
        word97.word97_bytes(["x" * word97.MAX_CODE_UNITS])


def test_duplicates_listed_are_really_duplicates():
    for dup in TRUTH["duplicates"]:
        a, b = dup["a"], dup["b"]
        if "row" not in a:  # whole files
            ta, tb = decode(a["file"]), decode(b["file"])
            if dup["type"] == "exact":
                assert (ROOT / a["file"]).read_bytes() == (ROOT / b["file"]).read_bytes()
            else:
                la, lb = ta.splitlines(), tb.splitlines()
                assert len(la) == len(lb)
                same = sum(x == y for x, y in zip(la, lb, strict=True))
                assert ta != tb and same >= len(la) - 2
            continue
        ra = table_rows(a.get("file", dup.get("file")))[a["row"] - 1]
        rb = table_rows(b.get("file", dup.get("file")))[b["row"] - 1]
        if dup["type"] == "exact":
            assert ra[:2] == rb[:2] and dup["text"] == ra[0]
        else:
            assert ra[0] != rb[0] and ra[1] == rb[1]
            fold = lambda q: re.sub(r"\s+", "", q).replace("？", "?")  # noqa: E731
            assert fold(ra[0]) == fold(rb[0])
    kinds = {(d["type"], "row" in d["a"], bool(d.get("across"))) for d in TRUTH["duplicates"]}
    assert {("exact", False, False), ("near", False, False), ("near", True, False)} <= kinds
    assert ("exact", True, True) in kinds


def test_feedback_files_match_ground_truth():
    fb = TRUTH["feedback"]
    bad = {(m["file"], m["line"]) for m in fb["malformed"]}
    assert bad == {("feedback/feedback_thumbs.jsonl", 6)}
    ratings: dict[str, set] = {}
    for path in fb["scales"]:
        for n, line in enumerate(decode(path).splitlines(), 1):
            if (path, n) in bad:
                with pytest.raises(json.JSONDecodeError):
                    json.loads(line)
                continue
            rec = json.loads(line)
            assert {"prompt", "response", "time", "user"} <= rec.keys()
            ratings.setdefault(path, set()).add(rec.get("rating"))
    assert ratings["feedback/feedback_stars.jsonl"] == {1, 2, 3, 4, 5, None}
    assert ratings["feedback/feedback_thumbs.jsonl"] == {"👍", "👎", None}
    assert len(fb["missing_rating"]) == 4
    for pair in fb["preference"]:
        assert pair["chosen_rating"] > pair["rejected_rating"]
        assert pair["prompt"] in decode(pair["file"]) and pair["chosen"] in decode(pair["file"])


def test_tickets_labels_and_times():
    rows = table_rows("tickets/tickets.csv")
    counts: dict[str, int] = {}
    for _, label, _ in rows:
        counts[label] = counts.get(label, 0) + 1
    assert counts == TRUTH["labels"]["counts"]
    assert min(counts, key=counts.__getitem__) == TRUTH["labels"]["rare"]
    times = [t for *_, t in rows]
    assert times == sorted(times) and [times[0], times[-1]] == TRUTH["labels"]["time_range"]


def test_bad_files_fail_the_way_ground_truth_says():
    reasons = {b["file"]: b["reason"] for b in TRUTH["bad_files"]}
    assert (ROOT / "bad/empty.txt").stat().st_size == 0 and reasons["bad/empty.txt"] == "empty"
    with pytest.raises(Exception):  # noqa: B017 - pypdf raises several types for truncation
        pypdf.PdfReader(str(ROOT / "bad/corrupt.pdf")).pages[0].extract_text()
    enc = pypdf.PdfReader(str(ROOT / "bad/encrypted.pdf"))
    assert (
        enc.is_encrypted
        and enc.decrypt("xinghe2025")
        and "XH-CNC-500" in (enc.pages[0].extract_text())
    )
    with pytest.raises(Exception):  # noqa: B017 - python-docx: PackageNotFoundError / BadZipFile
        docx.Document(str(ROOT / "bad/corrupt.docx"))
    assert reasons["bad/slides.pptx"] == "unsupported"


def test_regeneration_is_byte_identical(tmp_path):
    subprocess.run(
        [sys.executable, str(EXAMPLES / "make_examples.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = sorted(p.relative_to(tmp_path / "xinghe") for p in (tmp_path / "xinghe").rglob("*"))
    committed = sorted(p.relative_to(ROOT) for p in ROOT.rglob("*"))
    assert fresh == committed
    for rel in committed:
        if (ROOT / rel).is_file():
            assert (tmp_path / "xinghe" / rel).read_bytes() == (ROOT / rel).read_bytes(), rel
    truth = (tmp_path / "ground_truth.json").read_bytes()
    assert truth == (EXAMPLES / "ground_truth.json").read_bytes()


def test_example_eval_suites_are_valid() -> None:
    from luodi.eval.suite import load_suite

    suites = sorted((EXAMPLES / "eval").glob("*.yaml"))
    assert suites
    for path in suites:
        assert path.read_text(encoding="utf-8").startswith("# luodi eval run")
        assert load_suite(path).tasks
