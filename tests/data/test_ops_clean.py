"""Text cleaning operators (normalize, HTML, whitespace, boilerplate, filters, qa, preference)
and the default recipes: hand-checked outputs, drop reasons and OpStats through run_ops."""

from __future__ import annotations

import pickle
import random
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
import yaml

from luodi.data.ops import OPERATORS, Recipe, filters
from luodi.data.ops.base import Drop
from luodi.data.ops.boilerplate import MAX_HINTS, remove_lines
from luodi.data.ops.filters import (
    detect_language,
    detect_languages,
    repetition_ratios,
    special_counts,
    special_ratio,
)
from luodi.data.ops.normalize import (
    RADICAL_LOOKALIKES,
    normalize_unicode_text,
    normalize_whitespace_text,
    remove_control_chars_text,
    strip_html_text,
)
from luodi.data.ops.recipe import RECIPES, load_recipe
from luodi.data.pipeline import OpStats, run_ops
from luodi.data.records import Record, get_kind, make_record
from luodi.errors import BadInputError

MINE = {
    "normalize_unicode",
    "remove_control_chars",
    "strip_html",
    "normalize_whitespace",
    "drop_boilerplate_lines",
    "filter_length",
    "filter_special_ratio",
    "filter_repetition",
    "filter_language",
    "qa_drop_empty",
    "qa_strip_html_answers",
    "qa_dedup_question",
    "preference_drop_empty",
}
OTHERS = {"pii_mask", "exact_dedup", "near_dedup"}
FOOTER = "本文件由星河精密提供，未经许可不得转载"


def _records(kind_name: str, rows: list[dict]) -> list[Record]:
    kind = get_kind(kind_name)
    return [
        make_record(
            kind, source="/c.jsonl", source_sha256="0" * 64, location=f"line {i}", ordinal=i, **row
        )
        for i, row in enumerate(rows)
    ]


def _texts(texts: list[str]) -> list[Record]:
    return _records("text", [{"text": t} for t in texts])


def _run(
    kind_name: str, ops: list[dict], recs: list[Record], batch: int = 3
) -> tuple[list[Record], list[OpStats]]:
    built = Recipe(operators=ops).build(get_kind(kind_name))
    out: list[Record] = []
    batches = [recs[i : i + batch] for i in range(0, len(recs), batch)]
    result = run_ops(built, batches, out.extend)
    return out, result.operators


def _op(name: str, kind_name: str = "text", **params: object):
    return Recipe(operators=[{"op": name, **params}]).build(get_kind(kind_name))[0]


# --- normalize_unicode ----------------------------------------------------------------------


def test_nfkc_folds_kangxi_radicals_and_full_width_forms() -> None:
    assert normalize_unicode_text("⼀⽤⽅ＡＢＣ１２３") == "一用方ABC123"
    # Every Kangxi radical becomes a CJK unified ideograph under NFKC.
    for cp in range(0x2F00, 0x2FD6):
        out = normalize_unicode_text(chr(cp))
        assert len(out) == 1 and 0x4E00 <= ord(out) <= 0x9FFF, hex(cp)


def test_radical_supplement_look_alikes_are_folded() -> None:
    # PDF fonts map 见/长/门/马/风 to these radicals; plain NFKC leaves them alone.
    assert unicodedata.normalize("NFKC", "⻅⻓⻔⻢⻛") == "⻅⻓⻔⻢⻛"
    assert normalize_unicode_text("请⻅⻓⻔外的⻢⻛") == "请见长门外的马风"
    for radical, ideograph in RADICAL_LOOKALIKES.items():
        assert 0x2E80 <= ord(radical) <= 0x2EFF
        assert 0x4E00 <= ord(ideograph) <= 0x9FFF
    # NFC leaves compatibility forms (and radicals) as they are.
    assert normalize_unicode_text("⻅ＡＢ", form="NFC") == "⻅ＡＢ"


def test_cjk_punctuation_kept_unless_asked() -> None:
    assert normalize_unicode_text("Ｈｅｌｌｏ，世界！（好）……") == "Hello，世界！（好）……"
    assert (
        normalize_unicode_text("Ｈｅｌｌｏ，世界！（好）……", keep_cjk_punctuation=False)
        == "Hello,世界!(好)......"
    )


def test_normalize_unicode_equals_unicodedata_reference() -> None:
    rnd = random.Random(7)
    pool = [
        chr(c)
        for c in [
            *range(0x20, 0x180),
            *range(0x300, 0x370),  # combining accents: composition with the char before
            *range(0x1100, 0x1176),  # Hangul jamo: algorithmic composition
            *range(0x11A8, 0x11C3),
            *range(0xAC00, 0xAC20),
            *range(0x3000, 0x3040),
            *range(0xFF00, 0xFF70),
            *range(0x2F00, 0x2F30),
            0x4E2D,
            0x1D400,  # mathematical bold A (supplementary plane)
            0x1F600,
        ]
    ]
    for _ in range(3000):
        s = "".join(rnd.choice(pool) for _ in range(rnd.randint(1, 10)))
        for form in ("NFKC", "NFC"):
            assert normalize_unicode_text(s, form, False) == unicodedata.normalize(form, s), s


def test_normalize_unicode_returns_same_object_when_normal() -> None:
    s = "plain ascii text"
    assert normalize_unicode_text(s) is s
    zh = "本公司成立于二〇〇八年，主要从事精密机械。"
    assert normalize_unicode_text(zh) is zh


def test_normalize_unicode_through_pipeline_counts_modified() -> None:
    recs = _texts(["ＡＢＣ公司", "已经规范的文本。", "ascii only", "ｘ"])
    out, stats = _run("text", [{"op": "normalize_unicode"}], recs)
    assert [r["text"] for r in out] == ["ABC公司", "已经规范的文本。", "ascii only", "x"]
    s = stats[0]
    assert (s.records_in, s.kept, s.dropped, s.modified) == (4, 4, 0, 2)
    assert s.params == {"form": "NFKC", "keep_cjk_punctuation": True}


def test_normalize_unicode_applies_to_every_text_of_qa_and_preference() -> None:
    qa = _records(
        "qa",
        [
            {
                "messages": [
                    {"role": "user", "content": "ＡＰＩ？"},
                    {"role": "assistant", "content": "ok"},
                ]
            }
        ],
    )
    out, _ = _run("qa", [{"op": "normalize_unicode", "keep_cjk_punctuation": False}], qa)
    assert out[0]["messages"][0] == {"role": "user", "content": "API?"}
    pref = _records("preference", [{"prompt": "ａ", "chosen": "ｂ", "rejected": "c"}])
    out, _ = _run("preference", [{"op": "normalize_unicode"}], pref)
    assert (out[0]["prompt"], out[0]["chosen"], out[0]["rejected"]) == ("a", "b", "c")


# --- control characters, HTML, whitespace ------------------------------------------------


def test_remove_control_chars() -> None:
    raw = "a\x00b\x07c\u200bd\u200ce\u200df\ufeffg\x85h\x7fi\tj\nk"
    assert remove_control_chars_text(raw) == "abcdefghi\tj\nk"
    assert remove_control_chars_text("一\r\n二\r三") == "一\n二\n三"
    kept = "中文 English 😀 ﹏ é\n\tx"
    assert remove_control_chars_text(kept) is kept


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>第一段</p><p>第二段</p>", "\n第一段\n\n第二段\n"),
        ("a<br>b<br/>c<BR />d", "a\nb\nc\nd"),
        ("<ul><li>一</li><li>二</li></ul>", "一\n二\n\n"),
        ("<div>x</div><div>y</div>", "x\ny\n"),
        ("x<script>if (a<b) {}</script>y<style>p{}</style>z<!-- note -->", "xyz"),
        ("&amp; &lt;b&gt; &#x4e2d;&#25991; &copy;</p>", "& <b> 中文 ©\n"),
        ("a&nbsp;b</span>", "a\xa0b"),
        ('<a href="x.html" class="c">链接</a>', "链接"),
        ("<table><tr><td>1</td><td>2</td></tr></table>", "1 2 \n\n"),
        ("if a<b and c>d then", "if a<b and c>d then"),  # no markup: left alone
        ("no markup at all", "no markup at all"),
    ],
)
def test_strip_html(html: str, text: str) -> None:
    assert strip_html_text(html) == text


def test_normalize_whitespace() -> None:
    raw = "  标题\u3000\u3000内容\xa0\xa0x\t\ty  \n  第二行 \n\n\n\n\n第三行 \r\n 末尾  "
    assert normalize_whitespace_text(raw) == "标题 内容 x y\n第二行\n\n第三行\n末尾"
    same = "one line\n\nanother"
    assert normalize_whitespace_text(same) is same


def test_text_chain_html_to_clean_text() -> None:
    recs = _texts(["<p>Ｈｅｌｌｏ&nbsp;&nbsp;世界</p>\r\n<p>第二段\u200b</p>"])
    ops = [
        {"op": "normalize_unicode"},
        {"op": "remove_control_chars"},
        {"op": "strip_html"},
        {"op": "normalize_whitespace"},
    ]
    out, stats = _run("text", ops, recs)
    assert out[0]["text"] == "Hello 世界\n\n第二段"
    assert [s.modified for s in stats] == [1, 1, 1, 1]


# --- boilerplate --------------------------------------------------------------------------


BODIES = ["营收增长明显。", "新工厂开工。", "研发投入加大。", "客户满意度上升。", "出口订单增加。"]


def _docs_with_footer() -> list[str]:
    # Digits are normalized, so "第 11 页" ... "第 15 页" are one line; the bodies differ.
    return [f"{b}\n经营情况良好。\n{FOOTER}\n第 {i + 11} 页" for i, b in enumerate(BODIES)] + [
        "独立的文档，没有页脚。",
        f"{FOOTER}\n第 99 页",
    ]


def test_boilerplate_lines_removed_across_docs_unique_lines_stay() -> None:
    recs = _texts(_docs_with_footer())
    out, stats = _run("text", [{"op": "drop_boilerplate_lines"}], recs)
    texts = [r["text"] for r in out]
    # "经营情况良好。" is in 5 of 7 records too: repeated short lines are boilerplate as well.
    assert texts == [*BODIES, "独立的文档，没有页脚。"]
    s = stats[0]
    assert (s.records_in, s.kept, s.dropped, s.modified) == (7, 6, 1, 5)
    assert s.drop_reasons == {"empty_after_boilerplate": 1}
    assert s.examples["empty_after_boilerplate"][0]["id"] == recs[6]["id"]


def test_boilerplate_thresholds() -> None:
    texts = _docs_with_footer()
    # min_docs above the footer's 6 records: nothing is boilerplate.
    out, stats = _run("text", [{"op": "drop_boilerplate_lines", "min_docs": 7}], _texts(texts))
    assert [r["text"] for r in out] == texts and stats[0].modified == 0
    # The footer is in 6 of 7 records: a 0.9 fraction needs 6.3 records.
    op = _op("drop_boilerplate_lines", min_fraction=0.9)
    op.fit([_texts(texts)])
    assert op.boilerplate == frozenset()
    # Lines longer than max_line_chars are never boilerplate (digits normalized: one key).
    op = _op("drop_boilerplate_lines", max_line_chars=len(FOOTER) - 1)
    op.fit([_texts(texts)])
    assert op.boilerplate == {"第 00 页", "经营情况良好。"}


def test_remove_lines_with_and_without_hints() -> None:
    text = "正文一\n广告 3 号\n  000  \n正文二\n\n\n广告 17 号\n正文三"
    # Without hints (more than MAX_HINTS lines, or one made of digits only) every line is
    # checked; a digits-only line like "000" can be boilerplate (page numbers).
    many = frozenset(f"广告 {i} 号" for i in range(MAX_HINTS + 5)) | {"000", "广告 00 号"}
    assert remove_lines(text, many, None) == "正文一\n正文二\n\n正文三"
    # With hints (the longest digit-free piece of each line) only candidate lines are looked at.
    bp = frozenset({"广告 0 号", "广告 00 号"})
    want = "正文一\n  000  \n正文二\n\n正文三"
    assert remove_lines(text, bp, ("广告 ", "广告 ")) == want
    assert remove_lines(text, bp, None) == want
    assert remove_lines("无关内容", bp, ("广告 ",)) == "无关内容"


def test_boilerplate_fit_survives_pickling() -> None:
    # The Ray engine ships fitted operators to workers by pickle.
    op = _op("drop_boilerplate_lines")
    recs = _texts(_docs_with_footer())
    op.fit([recs])
    clone = pickle.loads(pickle.dumps(op))
    assert clone.boilerplate == op.boilerplate != frozenset()
    assert clone.process(recs) == op.process(recs)


# --- filters ------------------------------------------------------------------------------


def test_filter_length_reasons_details_and_examples_capped() -> None:
    texts = [f"短{i}" for i in range(7)] + ["刚好十个字符的一段话", "x" * 31]
    out, stats = _run("text", [{"op": "filter_length", "max_chars": 30}], _texts(texts))
    assert [r["text"] for r in out] == ["刚好十个字符的一段话"]
    s = stats[0]
    assert s.drop_reasons == {"too_short": 7, "too_long": 1}
    assert (s.records_in, s.kept, s.dropped) == (9, 1, 8)
    assert len(s.examples["too_short"]) == 5
    assert s.examples["too_short"][0] == {
        "id": _texts(texts)[0]["id"],
        "text": "短0",
        "detail": "length 2 < 10",
    }
    assert s.examples["too_long"][0]["detail"] == "length 31 > 30"


def test_filter_length_bad_range_is_bad_input() -> None:
    with pytest.raises(BadInputError, match="min_chars 50 > max_chars 10"):
        _op("filter_length", min_chars=50, max_chars=10)


def test_special_ratio_values() -> None:
    assert special_ratio("★★★ hello") == pytest.approx(3 / 9)
    assert special_ratio("本公司，成立于2008年。“好”！（注）【一】《二》、三；四：") == 0.0
    # prose punctuation (-, parentheses, %) is ordinary; _ [ ] { } @ # $ are symbols
    assert special_ratio("a_b-c (d) [e] {f} @#$%") == pytest.approx(8 / 22)
    assert special_ratio("😀😀ab") == 0.5
    assert special_ratio("") == 0.0
    assert special_ratio("Привет مرحبا こんにちは") == 0.0  # letters of any script


def test_filter_special_ratio_drops_symbol_soup() -> None:
    recs = _texts(["■■■■□□ 表格 ▲▲", "正常的一段中文文本，没有特殊符号。"])
    out, stats = _run("text", [{"op": "filter_special_ratio"}], recs)
    assert [r["text"] for r in out] == ["正常的一段中文文本，没有特殊符号。"]
    assert stats[0].drop_reasons == {"special_ratio": 1}
    assert stats[0].examples["special_ratio"][0]["detail"] == "ratio 0.67 > 0.3"  # 8 of 12


def _repetition_reference(text: str, n: int) -> float:
    grams = [text[i : i + n] for i in range(len(text) - n + 1)]
    if not grams:
        return 0.0
    counts = Counter(grams)
    return sum(c for c in counts.values() if c > 1) / len(grams)


def test_repetition_ratio_matches_counter_reference() -> None:
    rnd = random.Random(11)
    for _ in range(100):
        n = rnd.randint(2, 12)
        texts = [
            "".join(rnd.choice("ab中文c ") for _ in range(rnd.randint(0, 60)))
            for _ in range(rnd.randint(1, 20))
        ]
        got = repetition_ratios(texts, n)
        assert got == pytest.approx([_repetition_reference(t, n) for t in texts])
    assert repetition_ratios(["哈" * 30, "一二三四五六七八九十甲乙丙"], 10) == [1.0, 0.0]


def test_repetition_ratio_across_chunk_boundaries() -> None:
    # More texts than fit one numpy chunk (2047) are split; the results stay per text.
    texts = [
        "重复重复重复重复重复重复" if i % 2 else f"唯一的文本编号{i:05d}号" for i in range(2100)
    ]
    got = repetition_ratios(texts, 4)
    assert got == pytest.approx([_repetition_reference(t, 4) for t in texts])


def test_batch_measures_are_chunked_by_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = ["中文文本测试一下", "★★ English", "", "Русский", "重复重复重复重复"]
    whole = (special_counts(texts).tolist(), detect_languages(texts), repetition_ratios(texts, 2))
    monkeypatch.setattr(filters, "CHUNK_CHARS", 5)  # every text its own chunk
    assert (special_counts(texts).tolist(), detect_languages(texts)) == whole[:2]
    assert repetition_ratios(texts, 2) == whole[2]
    assert whole[0] == [0, 2, 0, 0, 0]


def test_filter_repetition_chinese() -> None:
    spam = "欢迎光临本店，" * 10
    fine = "本公司员工请假需提前三天在系统中提交申请，经部门经理审批后生效。"
    out, stats = _run("text", [{"op": "filter_repetition"}], _texts([spam, fine]))
    assert [r["text"] for r in out] == [fine]
    want = _repetition_reference(spam, 10)
    assert stats[0].examples["repetition"][0]["detail"] == f"ratio {want:.2f} > 0.5"


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("本公司员工请假需提前三天在系统中提交申请。", "zh"),
        ("The quarterly report shows revenue growth.", "en"),
        ("本公司使用Kubernetes部署LLM推理服务", "zh"),  # mixed zh/en: CJK 11/24 letters
        ("今日は良い天気ですね。東京に行きます。", "ja"),
        ("Привет, как дела? Всё хорошо.", "ru"),
        ("안녕하세요 회사에 오신 것을 환영합니다", "ko"),
        ("مرحبا بكم في الشركة", "ar"),
        ("Zürich office opened in 2020 with a new team", "en"),
        ("Größe und Qualität sind für Kunden wichtig: Änderungen prüfen", "latin"),
        ("12345 !!! ok", "unknown"),
        ("2024-01-01 ￥300", "unknown"),
    ],
)
def test_detect_language(text: str, lang: str) -> None:
    assert detect_language(text) == lang


def test_detect_languages_batch_equals_single() -> None:
    texts = ["中文文本测试", "English text", "", "Русский текст", "한국어 텍스트", "abc"]
    assert detect_languages(texts) == [detect_language(t) for t in texts]
    assert detect_language("abc", min_letters=3) == "en"


def test_filter_language_keeps_listed_and_unknown() -> None:
    texts = [
        "中文内容，包含 English 单词。",
        "Plain English sentence.",
        "Русский текст здесь",
        "123",
    ]
    out, stats = _run("text", [{"op": "filter_language"}], _texts(texts))
    assert [r["text"] for r in out] == [texts[0], texts[1], texts[3]]
    assert stats[0].examples["language"][0]["detail"] == "ru not in zh, en"
    out, stats = _run(
        "text",
        [{"op": "filter_language", "languages": ["en"], "drop_unknown": True}],
        _texts(texts),
    )
    assert [r["text"] for r in out] == [texts[1]]
    assert stats[0].drop_reasons == {"language": 3}


def test_filter_language_unknown_code_is_bad_input() -> None:
    with pytest.raises(BadInputError, match="unknown language codes"):
        _op("filter_language", languages=["zh", "chinese"])


# --- qa -----------------------------------------------------------------------------------


def _qa(*turns: tuple[str, str]) -> dict:
    return {"messages": [{"role": r, "content": c} for r, c in turns]}


def test_qa_drop_empty_reasons() -> None:
    rows = [
        _qa(("user", "年假几天？"), ("assistant", "十天。")),
        _qa(("user", "  "), ("assistant", "十天。")),
        _qa(("user", "年假几天？"), ("assistant", "\n")),
        _qa(("system", "你是助手"), ("user", "年假几天？")),
        _qa(("user", "第一问"), ("assistant", "答一"), ("user", ""), ("assistant", "答二")),
        _qa(("system", "只有系统"), ("assistant", "答")),
    ]
    out, stats = _run("qa", [{"op": "qa_drop_empty"}], _records("qa", rows))
    assert len(out) == 1 and out[0]["messages"][1]["content"] == "十天。"
    s = stats[0]
    assert s.drop_reasons == {"empty_question": 3, "empty_answer": 1, "no_answer": 1}
    details = [e["detail"] for e in s.examples["empty_question"]]
    assert details == ["turn 1 (user) is empty", "turn 3 (user) is empty", "no user turn"]


def test_qa_strip_html_answers_only_touches_assistant() -> None:
    rows = [
        _qa(("user", "<b>为什么</b>？"), ("assistant", "<p>因为&amp;所以</p>")),
        _qa(("user", "纯文本"), ("assistant", "纯文本回答")),
    ]
    recs = _records("qa", rows)
    op = _op("qa_strip_html_answers", "qa")
    out = op.process(recs)
    assert out[0]["messages"] == [
        {"role": "user", "content": "<b>为什么</b>？"},
        {"role": "assistant", "content": strip_html_text("<p>因为&amp;所以</p>")},
    ]
    assert out[0]["messages"][1]["content"] == "\n因为&所以\n"
    assert out[1] is recs[1]


def test_qa_dedup_question_keeps_first_across_batches() -> None:
    rows = [
        _qa(("user", "年假有几天？"), ("assistant", "十天")),
        _qa(("user", "报销流程是什么"), ("assistant", "走系统")),
        _qa(("system", "s"), ("user", " 年假 有几天?? "), ("assistant", "10 天")),
        _qa(("user", "ＡＢＣ 是什么"), ("assistant", "a")),
        _qa(("user", "abc是什么！"), ("assistant", "b")),
        _qa(("user", "年假有几天"), ("assistant", "十")),
    ]
    recs = _records("qa", rows)
    out, stats = _run("qa", [{"op": "qa_dedup_question"}], recs, batch=2)
    assert [r["id"] for r in out] == [recs[0]["id"], recs[1]["id"], recs[3]["id"]]
    s = stats[0]
    assert s.drop_reasons == {"duplicate_question": 3}
    assert [e["detail"] for e in s.examples["duplicate_question"]] == [
        recs[0]["id"],
        recs[3]["id"],
        recs[0]["id"],
    ]


# --- preference ---------------------------------------------------------------------------


def test_preference_drop_empty_reasons() -> None:
    rows = [
        {"prompt": "问", "chosen": "好答案", "rejected": "坏答案"},
        {"prompt": " ", "chosen": "a", "rejected": "b"},
        {"prompt": "问", "chosen": "", "rejected": "b"},
        {"prompt": "问", "chosen": "a", "rejected": None},
        {"prompt": "问", "chosen": "同样", "rejected": "同样 "},
    ]
    out, stats = _run("preference", [{"op": "preference_drop_empty"}], _records("preference", rows))
    assert [r["chosen"] for r in out] == ["好答案"]
    s = stats[0]
    assert s.drop_reasons == {"empty_prompt": 1, "empty_response": 2, "identical_pair": 1}
    assert [e["detail"] for e in s.examples["empty_response"]] == [
        "chosen is empty",
        "rejected is empty",
    ]


# --- kinds and recipes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "kind"),
    [
        ("qa_drop_empty", "text"),
        ("qa_dedup_question", "preference"),
        ("qa_strip_html_answers", "labeled"),
        ("preference_drop_empty", "qa"),
    ],
)
def test_op_for_wrong_kind_is_rejected(op: str, kind: str) -> None:
    with pytest.raises(BadInputError, match=f"operator '{op}' does not apply to {kind} records"):
        Recipe(operators=[{"op": "normalize_unicode"}, {"op": op}]).build(get_kind(kind))


def test_unknown_param_is_bad_input() -> None:
    with pytest.raises(BadInputError, match=r"recipe step 1 \(filter_length\)"):
        _op("filter_length", min_char=3)


@pytest.mark.parametrize("kind", ["text", "qa", "preference", "labeled"])
def test_default_recipes_name_registered_ops(kind: str) -> None:
    path = RECIPES / f"{kind}.yaml"
    first = Path(path).read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(f"# luodi data clean NAME --recipe src/luodi/data/recipes/{kind}.yaml")
    recipe = load_recipe(path)
    names = [spec["op"] for spec in recipe.operators]
    assert set(names) - MINE <= OTHERS
    Recipe(operators=[]).build(get_kind(kind))  # registers every built-in operator
    mine = [spec for spec in recipe.operators if spec["op"] in MINE]
    assert all(spec["op"] in OPERATORS for spec in mine)
    # Each of my steps builds (parameters valid, operator applies to the kind).
    ops = Recipe(operators=mine).build(get_kind(kind))
    assert [o.name for o in ops] == [spec["op"] for spec in mine]


def test_text_recipe_order() -> None:
    data = yaml.safe_load((RECIPES / "text.yaml").read_text(encoding="utf-8"))
    assert [s["op"] for s in data["operators"]] == [
        "normalize_unicode",
        "remove_control_chars",
        "strip_html",
        "normalize_whitespace",
        "drop_boilerplate_lines",
        "pii_mask",
        "filter_length",
        "filter_special_ratio",
        "filter_repetition",
        "filter_language",
        "exact_dedup",
        "near_dedup",
    ]
    assert data["operators"][-1] == {"op": "near_dedup", "threshold": 0.8}


def test_process_returns_one_output_per_input_and_same_objects() -> None:
    recs = _texts(["干净的中文文本，长度足够。", "Clean English text, long enough."])
    for name in sorted(MINE - {"qa_drop_empty", "qa_strip_html_answers", "qa_dedup_question"}):
        if name == "preference_drop_empty":
            continue
        op = _op(name)
        op.fit([recs])
        outs = op.process(recs)
        assert len(outs) == 2 and not any(isinstance(o, Drop) for o in outs), name
        assert all(o is r for o, r in zip(outs, recs, strict=True)), name
