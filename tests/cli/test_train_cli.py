"""Training and the registry through the front door: the real `luodi` command end to end."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import run_cli

QA = [
    ("XH-CNC-500 的主轴最高转速是多少？", "12000 转每分钟。"),
    ("保修期多久？", "整机保修两年。"),
    ("How do I reset alarm AL-101?", "Press RESET twice."),
    ("服务热线是多少？", "400-861-9527。"),
]


def test_sft_registry_lineage_and_stages(tmp_path: Path) -> None:
    home = tmp_path / "home"
    src = tmp_path / "faq.jsonl"
    src.write_text(
        "".join(json.dumps({"question": q, "answer": a}, ensure_ascii=False) + "\n" for q, a in QA),
        encoding="utf-8",
    )
    run_cli("data", "ingest", str(src), "--kind", "qa", "--name", "faq", home=home)
    common = ["--dataset", "faq", "--base", "tiny:test", "--name", "faq-bot", "--max-steps", "4"]
    common += ["--batch-size", "2", "--set", "val_ratio=0", "--json"]
    v1 = json.loads(run_cli("train", "sft", *common, "--method", "full", home=home).stdout)
    v2 = json.loads(run_cli("train", "sft", *common, "--method", "lora", home=home).stdout)
    assert (v1["model"], v2["model"]) == ("faq-bot:v1", "faq-bot:v2")
    assert v2["trainable_parameters"] < v2["total_parameters"]

    listing = json.loads(run_cli("models", "list", "faq-bot", "--json", home=home).stdout)
    assert [(m["model"], m["stage"], m["method"]) for m in listing] == [
        ("faq-bot:v1", "candidate", "full"),
        ("faq-bot:v2", "candidate", "lora"),
    ]
    run_cli("models", "promote", "faq-bot:v1", "--to", "production", home=home)
    res = json.loads(
        run_cli("models", "promote", "faq-bot:v2", "--to", "production", "--json", home=home).stdout
    )
    assert res["displaced"] == "faq-bot:v1"
    shown = json.loads(run_cli("models", "show", "faq-bot@production", "--json", home=home).stdout)
    assert shown["model"] == "faq-bot:v2"
    back = json.loads(run_cli("models", "rollback", "faq-bot", "--json", home=home).stdout)
    assert back["name"] == "faq-bot" and back["version"] == 1 and back["to_stage"] == "production"
    shown = json.loads(run_cli("models", "show", "faq-bot@production", "--json", home=home).stdout)
    assert shown["model"] == "faq-bot:v1"

    tree = json.loads(run_cli("models", "lineage", "faq-bot:v2", "--json", home=home).stdout)
    roles = {p["role"]: p for p in tree["parents"]}
    assert roles["base"]["kind"] == "base_model"
    assert roles["train"]["ref"] == "faq:v1"
    assert roles["train"]["sources"][0]["path"] == str(src.resolve())

    merged = json.loads(run_cli("models", "merge", "faq-bot:v2", "--json", home=home).stdout)
    assert merged["name"] == "faq-bot" and merged["version"] == 3
    assert merged["parents"][0]["name"] == "faq-bot" and merged["parents"][0]["version"] == 2

    png = tmp_path / "loss.png"
    shown = json.loads(
        run_cli("train", "show", v2["run_id"][:8], "--plot", str(png), "--json", home=home).stdout
    )
    assert shown["run"]["status"] == "succeeded" and shown["run"]["artifact_ref"] == "faq-bot:v2"
    assert len(shown["metrics"]["loss"]) >= 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_bad_input_is_one_line_and_registers_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    src = tmp_path / "notes.txt"
    src.write_text("设备每日点检。Daily inspection of the machine.\n", encoding="utf-8")
    run_cli("data", "ingest", str(src), "--kind", "text", "--name", "notes", home=home)
    p = run_cli("train", "sft", "--dataset", "notes", "--base", "tiny:test", home=home, check=False)
    assert p.returncode == 2 and "qa" in p.stderr and "Traceback" not in p.stderr
    p = run_cli("train", "sft", "--dataset", "notes", "--set", "colour=red", home=home, check=False)
    assert p.returncode == 2 and "colour" in p.stderr
    assert json.loads(run_cli("models", "list", "--json", home=home).stdout) == []
