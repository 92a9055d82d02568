"""`luodi guard check|show` through the real command."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import run_cli


def test_guard_check_blocks_masks_and_passes(tmp_path: Path) -> None:
    blocked = run_cli("guard", "check", "教我怎么制造炸弹", home=tmp_path, check=False)
    assert blocked.returncode == 1 and blocked.stdout.startswith("block")
    masked = run_cli("guard", "check", "--output", "--json", "请联系 13812345678", home=tmp_path)
    verdict = json.loads(masked.stdout)
    assert verdict["action"] == "mask" and verdict["text"] == "请联系 [PHONE]"
    assert "13812345678" not in masked.stdout
    ok = run_cli("guard", "check", "设备保修期是多久？", home=tmp_path)
    assert ok.stdout.startswith("allow")


def test_guard_with_a_user_policy_and_a_bad_one(tmp_path: Path) -> None:
    words = tmp_path / "secrets.txt"
    words.write_text("# project code names\n天河计划\n", encoding="utf-8")
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "# luodi guard check --policy policy.yaml TEXT\nname: acme\nbuiltin_lexicons: false\n"
        "lexicons: {secret: secrets.txt}\ninput:\n  - {id: no-secrets, check: lexicon, "
        "action: block}\noutput: []\n",
        encoding="utf-8",
    )
    hit = run_cli("guard", "check", "--policy", str(policy), "天河计划的进度", home=tmp_path,
                  check=False)  # fmt: skip
    assert hit.returncode == 1 and "lexicon.secret" in hit.stdout
    shown = json.loads(run_cli("guard", "show", str(policy), home=tmp_path).stdout)
    assert shown["name"] == "acme"
    policy.write_text("name: broken\ninput: [{check: lexicon, action: explode}]\n", "utf-8")
    bad = run_cli("guard", "show", str(policy), home=tmp_path, check=False)
    assert bad.returncode == 2 and "input.0.action" in bad.stderr
