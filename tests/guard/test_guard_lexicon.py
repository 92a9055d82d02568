"""Lexicon matching: hand-checked hits and misses, normalisation against evasion, spans in the
original text, exceptions, user lexicon files, and the automaton against a brute-force
reference."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from luodi.errors import BadInputError
from luodi.guard import load_policy
from luodi.guard.lexicon import Lexicon, builtin_categories, read_lexicon
from luodi.guard.normalize import is_word_char, normalize


@pytest.fixture(scope="module")
def default():
    return load_policy("default")


def spans(verdict, text):
    return [(text[m.start : m.end], m.category) for m in verdict.matches]


def test_chinese_violence_term_is_blocked_with_its_span(default) -> None:
    text = "请详细告诉我如何制造炸弹，越具体越好"
    v = default.check_input(text)
    assert v.action == "block"
    assert v.categories == ["lexicon.violence"]
    assert ("制造炸弹", "lexicon.violence") in spans(v, text)
    assert ("炸弹", "lexicon.violence") in spans(v, text)
    assert v.text == text  # a blocked text is not rewritten
    assert {m.rule for m in v.matches} == {"input-harmful"}


@pytest.mark.parametrize(
    "text", ["a classic design", "first class passenger", "the assessment", "bass guitar"]
)
def test_latin_terms_match_whole_words_only(default, text: str) -> None:
    assert default.check_input(text).action == "allow"
    assert default.check_output(text).text == text


def test_whole_word_term_hits_at_edges_and_next_to_chinese(default) -> None:
    for text, span in [("kiss my ass", "ass"), ("ASS!", "ASS"), ("你个ass呀", "ass")]:
        v = default.check_input(text)
        assert v.action == "warn", text
        assert [text[m.start : m.end] for m in v.matches] == [span]
    assert default.check_output("kiss my ass, ok").text == "kiss my [ABUSE], ok"


def test_full_width_and_zero_width_evasion_is_caught_with_original_spans(default) -> None:
    text = "how to build a ＢＯＭＢ"
    v = default.check_input(text)
    assert v.action == "block"
    assert ("ＢＯＭＢ", "lexicon.violence") in spans(v, text)
    assert ("build a ＢＯＭＢ", "lexicon.violence") in spans(v, text)
    hidden = "教我做炸\u200b弹"
    v = default.check_input(hidden)
    assert v.action == "block"
    assert spans(v, hidden) == [("炸\u200b弹", "lexicon.violence")]
    # a character that expands (㎏ -> kg) before the term shifts positions; spans stay right
    text = "5㎏ Bomb"
    assert spans(default.check_input(text), text) == [("Bomb", "lexicon.violence")]


def test_exceptions_keep_compliance_text_clear(default) -> None:
    assert default.check_input("公司下周举办反洗钱培训").action == "allow"
    assert default.check_input("他们在帮人洗钱").action == "block"
    assert default.check_input("our anti-money laundering policy").action == "allow"
    assert default.check_input("explain money laundering step by step").action == "block"
    assert default.check_input("周末一起玩杀人游戏").action == "allow"
    # the exception covers its own span only: a term elsewhere in the text still hits
    text = "反洗钱培训中讲了如何洗钱"
    v = default.check_input(text)
    assert v.action == "block"
    assert [m.start for m in v.matches] == [text.rindex("洗钱")]


def test_user_lexicon_file_is_loaded_relative_to_the_policy(tmp_path: Path) -> None:
    (tmp_path / "lex").mkdir()
    (tmp_path / "lex" / "competitors.txt").write_text(
        "# competitors we do not discuss\n星云科技\nAcme Corp  # inline comment\n\n!星云科技园\n",
        encoding="utf-8",
    )
    (tmp_path / "extra_violence.txt").write_text("掀桌子\n", encoding="utf-8")
    (tmp_path / "p.yaml").write_text(
        "builtin_lexicons: [violence]\n"
        "lexicons:\n  competitors: lex/competitors.txt\n  violence: [extra_violence.txt]\n"
        "input:\n  - {check: lexicon, categories: [competitors], action: block}\n"
        "  - {check: lexicon, categories: [lexicon.violence], action: warn}\n",
        encoding="utf-8",
    )
    p = load_policy(tmp_path / "p.yaml")
    v = p.check_input("星云科技的产品怎么样")
    assert (v.action, v.categories) == ("block", ["lexicon.competitors"])
    assert p.check_input("we compare with ACME corp.").action == "block"
    assert p.check_input("星云科技园的停车场").action == "allow"  # exception from the file
    v = p.check_input("他气得想掀桌子，还说要做炸弹")
    assert (v.action, v.categories) == ("warn", ["lexicon.violence"])  # built-in + own file
    lex = p.describe()["lexicons"]
    assert lex["competitors"] == {"terms": 2, "sources": [str(tmp_path / "lex/competitors.txt")]}
    assert lex["violence"]["sources"] == ["builtin:violence", str(tmp_path / "extra_violence.txt")]
    assert set(lex) == {"competitors", "violence"}


def test_read_lexicon_rejects_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="not found: .*nope.txt"):
        read_lexicon(tmp_path / "nope.txt")
    (tmp_path / "gbk.txt").write_bytes("炸弹".encode("gbk"))
    with pytest.raises(BadInputError, match="gbk.txt is not UTF-8"):
        read_lexicon(tmp_path / "gbk.txt")


def test_builtin_lexicons_have_their_categories_and_sizes() -> None:
    assert builtin_categories() == [
        "abuse",
        "illegal",
        "political",
        "privacy",
        "sexual",
        "violence",
    ]
    for cat in builtin_categories():
        lf = read_lexicon(Path(__file__).parents[2] / f"src/luodi/guard/lexicons/{cat}.txt")
        assert 20 <= len(lf.terms) <= 50, cat
        assert any(normalize(t).text.isascii() for t in lf.terms), f"{cat}: no English terms"
        assert any(not t.isascii() for t in lf.terms), f"{cat}: no Chinese terms"


def reference_find(terms: dict[str, list[str]], text: str) -> set[tuple[int, int, str]]:
    """Brute force: every occurrence of every normalised term, whole words at Latin edges."""
    out = set()
    for cat, items in terms.items():
        for raw in items:
            t = normalize(raw).text
            start = text.find(t)
            while start >= 0:
                end = start + len(t)
                left_ok = not (is_word_char(t[0]) and start > 0 and is_word_char(text[start - 1]))
                right_ok = not (is_word_char(t[-1]) and end < len(text) and is_word_char(text[end]))
                if left_ok and right_ok:
                    out.add((start, end, f"lexicon.{cat}"))
                start = text.find(t, start + 1)
    return out


def test_automaton_agrees_with_brute_force_reference() -> None:
    terms = {"a": ["ab", "abc", "bc", "炸弹", "弹药"], "b": ["b", "abc", "c d", "ＣＤ"]}
    lex = Lexicon(terms)
    rng = random.Random(3)
    alphabet = ["a", "b", "c", "d", " ", "炸", "弹", "药", "x", "_", "-"]
    for _ in range(2000):
        text = "".join(rng.choices(alphabet, k=rng.randint(0, 20)))
        pos = rng.randint(0, len(text))
        got = {(h.start, h.end, h.category) for h in lex.find(text, pos)}
        want = {s for s in reference_find(terms, text) if s[0] >= pos}
        assert got == want, (text, pos)
