"""`luodi kb …` through the real command: create, add a folder (a bad file reported), search
as JSON lines, delete, list/show, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import run_cli


def _lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_kb_commands(tmp_path: Path) -> None:
    home = tmp_path / "home"
    docs = tmp_path / "docs"
    (docs / "hr").mkdir(parents=True)
    (docs / "hr" / "leave.md").write_text(
        "# Leave\n\nEmployees receive fifteen days of annual leave per year.\n\n"
        "# 报销\n\n差旅费用须在出差结束后三十天内提交报销申请。\n",
        encoding="utf-8",
    )
    (docs / "press.txt").write_text(
        "Connect the grounding wire before switching on the XH-200 press.\n", encoding="utf-8"
    )
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")

    created = json.loads(
        run_cli(
            "kb", "create", "ops", "--embedder", "e5", "--team", "support", "--json", home=home
        ).stdout
    )
    assert (created["ref"], created["team"], created["documents"]) == ("ops:v1", "support", 0)

    added = json.loads(
        run_cli("kb", "add", "ops", str(docs), "--tag", "manual", "--json", home=home).stdout
    )
    assert added["kb"]["ref"] == "ops:v2"
    assert sorted(d["source"] for d in added["added"]) == ["hr/leave.md", "press.txt"]
    assert all(d["tags"] == ["manual"] for d in added["added"])
    assert [s["file"] for s in added["skipped"]] == ["broken.pdf"]
    assert added["chunks_embedded"] == added["kb"]["chunks"] >= 3

    hits = _lines(
        run_cli(
            "kb", "search", "ops", "grounding wire press", "--top-k", "2", "--json", home=home
        ).stdout
    )
    assert [h["rank"] for h in hits] == [1, 2]
    top = hits[0]
    assert top["source"] == "press.txt" and "grounding wire" in top["text"]
    assert top["knowledge_base"] == "ops:v2" and top["dense"] is not None
    assert hits[0]["score"] >= hits[1]["score"]

    lexical = _lines(
        run_cli("kb", "search", "ops", "报销申请", "--mode", "lexical", "--json", home=home).stdout
    )
    assert lexical and lexical[0]["section"] == "报销" and lexical[0]["dense"] is None

    deleted = json.loads(run_cli("kb", "delete", "ops", "press.txt", "--json", home=home).stdout)
    assert deleted["kb"]["ref"] == "ops:v3" and deleted["removed"] == ["press.txt"]
    after = _lines(
        run_cli(
            "kb", "search", "ops", "grounding wire press", "--mode", "dense", "--json", home=home
        ).stdout
    )
    assert after and all(h["source"] != "press.txt" for h in after)

    shown = json.loads(run_cli("kb", "show", "ops", "--json", home=home).stdout)
    assert [v["ref"] for v in shown["versions"]] == ["ops:v1", "ops:v2", "ops:v3"]
    assert [d["source"] for d in shown["documents"]] == ["hr/leave.md"]

    missing = run_cli("kb", "search", "nope", "anything", home=home, check=False)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "error: knowledge base 'nope' not found; known knowledge bases: ops"
    ]
