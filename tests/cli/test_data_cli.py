"""The data stage through the front door: the real `luodi` command on real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from docx import Document
from openpyxl import Workbook

from tests.helpers import run_cli


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A folder of mixed-format documents with PII, a duplicate and bad files."""
    d = tmp_path / "docs"
    d.mkdir()
    body = "XH-CNC-500 数控机床每日开机前须检查润滑油位与气压，气压应在 0.5-0.7 MPa 之间。"
    (d / "a.md").write_text(f"# 开机检查\n\n{body}\n\n联系人邮箱 li.lei@corp.example\n", "utf-8")
    (d / "b.txt").write_bytes(f"{body}\n".encode("gbk"))
    (d / "b_copy.txt").write_bytes(f"\ufeff{body}\n".encode())  # b.txt again, UTF-8 with BOM
    doc = Document()
    doc.add_heading("安全规定", level=1)
    doc.add_paragraph("进入车间必须佩戴安全帽和护目镜。Wear a helmet and goggles in the workshop.")
    doc.add_paragraph("值班电话 13912345678，服务热线 400-861-9527。")
    doc.save(d / "c.docx")
    (d / "empty.txt").write_bytes(b"")
    (d / "broken.docx").write_bytes(b"PK\x03\x04 not really a zip")
    (d / "slides.pptx").write_bytes(b"whatever")
    return d


def test_ingest_clean_split_export_roundtrip(docs: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    res = json.loads(
        run_cli(
            "data", "ingest", str(docs), "--kind", "text", "--name", "manual", "--json", home=home
        ).stdout
    )
    assert res["dataset"] == "manual:v1"
    skipped = {Path(p["path"]).name: p["reason"] for p in res["skipped"] if p["location"] is None}
    assert set(skipped) == {"empty.txt", "broken.docx", "slides.pptx"}
    assert "empty" in skipped["empty.txt"] and ".pptx" in skipped["slides.pptx"]
    assert res["rows"] >= 3

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "# luodi data clean manual --recipe recipe.yaml\n"
        "operators:\n"
        "  - op: normalize_unicode\n"
        "  - op: normalize_whitespace\n"
        "  - op: pii_mask\n"
        "    allow: ['400-861-9527']\n"
        "  - op: exact_dedup\n",
        encoding="utf-8",
    )
    clean = json.loads(
        run_cli("data", "clean", "manual", "--recipe", str(recipe), "--json", home=home).stdout
    )
    assert clean["dataset"] == "manual:v2"
    ops = {o["op"]: o for o in clean["operators"]}
    assert ops["exact_dedup"]["dropped"] == 1  # b_copy.txt decodes to b.txt's text
    assert ops["pii_mask"]["modified"] >= 2

    out = tmp_path / "manual.jsonl"
    run_cli("data", "export", "manual:v2", "--format", "jsonl", "-o", str(out), home=home)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    text = "\n".join(r["text"] for r in rows)
    assert "13912345678" not in text and "li.lei@corp.example" not in text
    assert "[PHONE]" in text and "[EMAIL]" in text and "400-861-9527" in text
    assert all(r["source_sha256"] and r["location"] for r in rows)

    split = json.loads(
        run_cli("data", "split", "manual", "--ratios", "0.5,0.5,0", "--json", home=home).stdout
    )
    assert split["dataset"] == "manual:v3" and sum(split["splits"].values()) == clean["rows"]

    listing = json.loads(run_cli("data", "list", "--json", home=home).stdout)
    assert [d["dataset"] for d in listing] == ["manual:v1", "manual:v2", "manual:v3"]
    assert listing[2]["parents"] == ["manual:v2"]

    diff = json.loads(run_cli("data", "diff", "manual:v1", "manual:v2", "--json", home=home).stdout)
    assert diff["removed"] == ops["exact_dedup"]["dropped"]
    assert diff["changed"] >= 2 and diff["added"] == 0

    lineage = json.loads(run_cli("data", "lineage", "manual:v3", "--json", home=home).stdout)
    root = lineage["parents"][0]["parents"][0]
    assert root["ref"] == "manual:v1"
    assert {Path(s["path"]).name for s in root["sources"]} == {
        "a.md",
        "b.txt",
        "b_copy.txt",
        "c.docx",
    }


def test_qa_from_xlsx_exports_alpaca_and_sharegpt(tmp_path: Path) -> None:
    wb = Workbook()
    ws = wb.active
    ws.append(["问题", "答案", "类别"])
    ws.append(["保修期多久？", "整机保修两年。", "售后"])
    ws.append(["如何预约上门服务？", "请拨打服务热线。", "售后"])
    ws.append(["", "没有问题的答案", "其他"])
    wb.save(tmp_path / "faq.xlsx")
    home = tmp_path / "home"
    run_cli(
        "data", "ingest", str(tmp_path / "faq.xlsx"), "--kind", "qa", "--name", "faq", home=home
    )
    run_cli("data", "clean", "faq", home=home)
    alpaca = tmp_path / "alpaca.jsonl"
    run_cli("data", "export", "faq", "--format", "alpaca", "-o", str(alpaca), home=home)
    rows = [json.loads(x) for x in alpaca.read_text(encoding="utf-8").splitlines()]
    assert rows == [
        {"instruction": "保修期多久？", "input": "", "output": "整机保修两年。"},
        {"instruction": "如何预约上门服务？", "input": "", "output": "请拨打服务热线。"},
    ]
    share = tmp_path / "share.jsonl"
    run_cli("data", "export", "faq", "--format", "sharegpt", "-o", str(share), home=home)
    first = json.loads(share.read_text(encoding="utf-8").splitlines()[0])
    assert first["conversations"][0] == {"from": "human", "value": "保修期多久？"}


def test_errors_are_one_line_with_exit_codes(docs: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    p = run_cli("data", "show", "missing", home=home, check=False)
    assert p.returncode == 2 and "not found" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    run_cli("data", "ingest", str(docs), "--kind", "text", "--name", "m", home=home)
    bad = tmp_path / "bad.yaml"
    bad.write_text("operators:\n  - op: pii_mask\n    colour: red\n", encoding="utf-8")
    p = run_cli("data", "clean", "m", "--recipe", str(bad), home=home, check=False)
    assert p.returncode == 2 and "colour" in p.stderr
    p = run_cli(
        "data", "export", "m", "--format", "dpo", "-o", str(tmp_path / "x"), home=home, check=False
    )
    assert p.returncode == 2 and "does not fit text records" in p.stderr
    p = run_cli(
        "data",
        "ingest",
        str(docs / "slides.pptx"),
        "--kind",
        "text",
        "--name",
        "n",
        home=home,
        check=False,
    )
    assert p.returncode == 2 and "no text records" in p.stderr
    # failed runs registered nothing
    listing = json.loads(run_cli("data", "list", "--json", home=home).stdout)
    assert [d["dataset"] for d in listing] == ["m:v1"]
    p = run_cli("--debug", "data", "show", "missing", home=home, check=False)
    assert "Traceback" in p.stderr


def test_cli_on_postgresql(docs: Path, tmp_path: Path, pg_database: str) -> None:
    """The same commands with the metadata store on PostgreSQL (LUODI_DATABASE_URL)."""
    home = tmp_path / "home"
    env = {"LUODI_DATABASE_URL": pg_database}
    run_cli("data", "ingest", str(docs), "--kind", "text", "--name", "pg", home=home, env=env)
    res = json.loads(run_cli("data", "clean", "pg", "--json", home=home, env=env).stdout)
    assert res["dataset"] == "pg:v2"
    listing = json.loads(run_cli("data", "list", "--json", home=home, env=env).stdout)
    assert [(d["dataset"], d["parents"]) for d in listing] == [("pg:v1", []), ("pg:v2", ["pg:v1"])]
    # the SQLite default saw none of it
    assert json.loads(run_cli("data", "list", "--json", home=home).stdout) == []
