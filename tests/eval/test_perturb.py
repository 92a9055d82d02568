"""Perturbations: deterministic, always a change when one is possible, and each kind makes
exactly the edit it names (checked against hand examples and unicodedata's NFKC)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

import luodi.eval.perturb as perturb_module
from luodi.errors import BadInputError
from luodi.eval.perturb import (
    DEFAULT_SYNONYMS,
    NEIGHBOURS,
    PERTURBATIONS,
    SynonymTable,
    load_synonyms,
    perturb,
    rng_for,
    to_fullwidth,
    to_halfwidth,
)

TEXTS = [
    "How do I reset my password?",
    "年假有多少天？请帮助我查找文件。",
    "Please check the VPN guide, then restart 电脑。",
    "报销需要发票原件和审批单 (2 份)",
    "Error 500 on login: what should I do?",
]
PERTURB_PY = Path(perturb_module.__file__)
KINDS = ["typo", "swap", "width", "punct", "synonym", "noise"]


def _punct_free(s: str) -> str:
    return "".join(c for c in s if not unicodedata.category(c).startswith("P"))


def test_every_kind_is_registered() -> None:
    assert PERTURBATIONS.names() == sorted(KINDS)
    with pytest.raises(BadInputError, match="unknown perturbation 'shout'"):
        perturb("x", "shout", rng_for(0, "r", "shout"))
    with pytest.raises(BadInputError, match="edits must be at least 1"):
        perturb("x", "noise", rng_for(0, "r", "noise"), edits=0)


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_and_always_a_change(kind: str) -> None:
    varied = []
    for text in TEXTS:
        if (kind == "synonym" and not DEFAULT_SYNONYMS.occurrences(text)) or (
            kind == "typo" and not re.search("[A-Za-z]", text)
        ):
            continue  # impossible: covered by test_unchanged_only_when_impossible
        outs = []
        for seed in range(30):
            a = perturb(text, kind, rng_for(seed, "rec-1", kind))
            b = perturb(text, kind, rng_for(seed, "rec-1", kind))
            assert a == b  # same (seed, record id, kind): same copy
            assert a != text, (kind, text, seed)
            outs.append(a)
        varied.append(len(set(outs)) > 1)
        multi = perturb(text, kind, rng_for(0, "rec-1", kind), edits=3)
        assert multi != text
    assert any(varied)  # the seed matters (where more than one edit is possible)


def test_copies_depend_on_record_id_kind_and_copy() -> None:
    text = TEXTS[0]
    by_id = {perturb(text, "noise", rng_for(0, f"rec-{i}", "noise")) for i in range(20)}
    by_copy = {perturb(text, "noise", rng_for(0, "rec", "noise", c)) for c in range(20)}
    assert len(by_id) > 10 and len(by_copy) > 10


def test_same_copies_in_another_process() -> None:
    """String seeds are hashed with SHA-512: PYTHONHASHSEED does not change a copy."""
    here = {k: perturb(TEXTS[2], k, rng_for(7, "abc", k)) for k in KINDS}
    # The module alone (importing luodi.eval would load torch: seconds for nothing).
    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('p', {str(PERTURB_PY)!r})\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['p'] = m\n"
        "spec.loader.exec_module(m)\n"
        f"print(json.dumps({{k: m.perturb({TEXTS[2]!r}, k, m.rng_for(7, 'abc', k)) for k in "
        f"{KINDS!r}}}, ensure_ascii=False))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(out.stdout) == here


def test_unchanged_only_when_impossible() -> None:
    rng = rng_for(0, "r", "x")
    assert perturb("年假有多少天", "typo", rng) == "年假有多少天"  # no Latin letter
    assert perturb("aaa bbb", "swap", rng) == "aaa bbb"  # no two different adjacent chars
    assert perturb("中文测试", "width", rng) == "中文测试"  # nothing has another width
    assert perturb("helpful xyz", "synonym", rng) == "helpful xyz"  # `help` only as a word
    for kind in KINDS:
        assert perturb("", kind, rng) == ""


def test_typo_is_one_keyboard_slip_in_a_latin_word() -> None:
    text = "Reset 密码 now"
    for seed in range(60):
        out = perturb(text, "typo", rng_for(seed, "r", "typo"))
        assert out.count("密码") == 1 and out != text
        if len(out) == len(text):  # a neighbouring key
            (i,) = [i for i, (a, b) in enumerate(zip(text, out, strict=True)) if a != b]
            assert out[i].lower() in NEIGHBOURS[text[i].lower()]
            assert out[i].isupper() == text[i].isupper()
        elif len(out) == len(text) - 1:  # a dropped letter
            assert any(text[:i] + text[i + 1 :] == out for i in range(len(text)))
        else:  # a doubled letter
            assert len(out) == len(text) + 1
            assert any(out[:i] + out[i + 1 :] == text and out[i] == out[i + 1] for i in range(12))
    assert set(NEIGHBOURS["g"]) == set("ftyhbv") and set(NEIGHBOURS["q"]) == set("wa")


def test_swap_exchanges_two_adjacent_characters() -> None:
    for text in TEXTS[:2]:
        for seed in range(30):
            out = perturb(text, "swap", rng_for(seed, "r", "swap"))
            diff = [i for i, (a, b) in enumerate(zip(text, out, strict=True)) if a != b]
            assert len(diff) == 2 and diff[1] == diff[0] + 1
            i = diff[0]
            assert (out[i], out[i + 1]) == (text[i + 1], text[i])
    assert perturb("长江", "swap", rng_for(0, "r", "swap")) == "江长"


def test_width_conversion_exact() -> None:
    assert to_fullwidth("Hi, 2024!") == "Ｈｉ，　２０２４！"
    assert to_halfwidth("ＡＢＣ１２３（测试）？") == "ABC123(测试)?"
    assert to_halfwidth("年假　１５天") == "年假 15天"
    ascii_chars = "".join(chr(c) for c in range(0x20, 0x7F))
    full = to_fullwidth(ascii_chars)
    assert to_halfwidth(full) == ascii_chars
    assert unicodedata.normalize("NFKC", full) == ascii_chars  # the Unicode reference mapping
    assert to_fullwidth("中文。") == "中文。"  # not ASCII: unchanged
    for seed in range(30):
        out = perturb("Hi 中文，OK", "width", rng_for(seed, "r", "width"))
        diff = [i for i, (a, b) in enumerate(zip("Hi 中文，OK", out, strict=True)) if a != b]
        assert len(diff) == 1
        assert unicodedata.normalize("NFKC", out) == unicodedata.normalize("NFKC", "Hi 中文，OK")


def test_punct_only_touches_punctuation_and_keeps_numbers() -> None:
    text = "价格是3.14元，对吗? Yes."
    kinds_seen = set()
    for seed in range(80):
        out = perturb(text, "punct", rng_for(seed, "r", "punct"))
        assert out != text and _punct_free(out) == _punct_free(text)
        assert "3.14" in out  # a decimal point is not punctuation to perturb
        kinds_seen.add(len(out) - len(text))
    assert kinds_seen == {-1, 0, 1}  # removed, converted, added
    for seed in range(20):
        out = perturb("。", "punct", rng_for(seed, "r", "punct"))
        assert out in {"", "."} or (len(out) == 2 and out[0] == "。" and not _punct_free(out))


def test_synonym_replaces_whole_words_keeping_case() -> None:
    rng = rng_for(0, "r", "synonym")
    assert perturb("Please help me", "synonym", rng) == "Please assist me"
    assert perturb("Help me", "synonym", rng) == "Assist me"
    assert perturb("请帮助我", "synonym", rng) == "请协助我"
    assert perturb("计算机坏了", "synonym", rng) == "电脑坏了"
    assert DEFAULT_SYNONYMS.alternatives("ISSUE") == ["problem"]
    assert 55 <= len(DEFAULT_SYNONYMS) // 2 <= 80  # about sixty pairs


def test_user_synonym_file(tmp_path: Path) -> None:
    path = tmp_path / "syn.txt"
    path.write_text("# enterprise words\n工单,请求单\nticket\tcase, request\n\n", encoding="utf-8")
    table = load_synonyms(path)
    assert table.alternatives("工单") == ["请求单"]
    assert table.alternatives("case") == ["ticket", "request"]
    assert table.alternatives("help") == ["assist"]  # the built-in table is kept
    assert perturb("open a ticket", "synonym", rng_for(0, "r", "s"), synonyms=table) in {
        "open a case",
        "open a request",
    }
    only = load_synonyms(path, base=None)
    assert only.alternatives("help") == [] and isinstance(only, SynonymTable)
    path.write_text("a,b\nlonely\n", encoding="utf-8")
    with pytest.raises(BadInputError, match="line 2: a synonym group needs at least two"):
        load_synonyms(path)
    with pytest.raises(BadInputError, match="cannot read synonym file"):
        load_synonyms(tmp_path / "missing.txt")


def test_noise_inserts_one_character() -> None:
    for text in TEXTS:
        for seed in range(20):
            out = perturb(text, "noise", rng_for(seed, "r", "noise"))
            assert len(out) == len(text) + 1
            assert any(out[:i] + out[i + 1 :] == text for i in range(len(out)))
