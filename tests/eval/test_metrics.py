"""Metrics agree with reference implementations (scikit-learn, sacrebleu, rouge-score) to 1e-9
and with hand-computed values for the CJK token F1 and ROUGE-L."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu
from rouge_score import rouge_scorer
from sklearn import metrics as skm

from luodi.errors import BadInputError
from luodi.eval.metrics import (
    accuracy,
    bleu,
    bleu_tokenizer,
    chrf,
    cjk_tokens,
    classification_report,
    exact_match,
    higher_is_better,
    lcs_length,
    rouge_l,
    token_f1,
)

TOL = 1e-9

# A small generation corpus: Chinese, English and mixed sentences, some exact, some not.
PREDS = [
    "退货需要在签收后七天内申请。",
    "发票可以在订单详情页下载",
    "The warranty lasts two years from the date of purchase.",
    "请联系客服热线 400-820-8820 获取帮助",
    "Luodi 支持 LoRA 微调",
    "我们周末不上班",
]
REFS = [
    "退货须在签收后 7 天内申请。",
    "发票可以在订单详情页面下载。",
    "The warranty is valid for two years after purchase.",
    "请拨打客服热线 400-820-8820。",
    "Luodi 支持 LoRA 和全参数微调",
    "我们周末休息，不上班",
]


class CJKTokenizer:
    """rouge-score's tokenizer interface over our cjk_tokens."""

    def tokenize(self, text: str) -> list[str]:
        return cjk_tokens(text)


# -- tokens and exact match -------------------------------------------------------------
def test_cjk_tokens_split_chinese_by_character_and_other_text_by_word() -> None:
    assert cjk_tokens("Luodi 支持LoRA，v2!") == ["luodi", "支", "持", "lora", "v2"]
    # NFKC turns full-width letters/digits into ASCII; kana and Hangul are one token each.
    assert cjk_tokens("ＡＢＣ１２３ 東京タワー") == ["abc123", "東", "京", "タ", "ワ", "ー"]
    assert cjk_tokens("한국어 hello_world") == ["한", "국", "어", "hello", "world"]
    assert cjk_tokens("。，！？ ...") == []


def test_exact_match_normalises_width_space_and_trailing_punctuation() -> None:
    assert exact_match("北京。", "北京") == 1.0
    assert exact_match("  北京   市！ ", "北京 市") == 1.0
    assert exact_match("ＡＢＣ", "ABC") == 1.0  # NFKC
    assert exact_match("Paris?", "Paris") == 1.0
    assert exact_match("北京", "南京") == 0.0
    assert exact_match("北。京", "北京") == 0.0  # only trailing punctuation goes
    assert exact_match("Paris", "paris") == 0.0
    assert exact_match("Paris", "paris", ignore_case=True) == 1.0


# -- token F1 (hand-computed) -----------------------------------------------------------
def test_token_f1_hand_computed() -> None:
    # pred [我 爱 北 京], ref [我 爱 上 海]: overlap {我, 爱} = 2; P = 2/4, R = 2/4, F1 = 0.5
    assert token_f1("我爱北京", "我爱上海") == pytest.approx(0.5, abs=TOL)
    # pred [the cat the 猫] (4), ref [the 猫 猫] (3): multiset overlap the×min(2,1) + 猫×min(1,2)
    # = 2; P = 2/4 = 1/2, R = 2/3; F1 = 2·(1/2)·(2/3) / (1/2 + 2/3) = (2/3) / (7/6) = 4/7
    assert token_f1("the cat the 猫", "The 猫 猫") == pytest.approx(4 / 7, abs=TOL)
    # pred [今 天 weather 很 好] (5), ref [今 天 很 好] (4): overlap 4; P = 4/5, R = 1;
    # F1 = 2·0.8·1 / 1.8 = 8/9
    assert token_f1("今天 weather 很好", "今天很好") == pytest.approx(8 / 9, abs=TOL)
    assert token_f1("完全不同", "毫无关系") == 0.0
    assert token_f1("", "") == 1.0  # SQuAD: both empty
    assert token_f1("。", "答案") == 0.0


# -- ROUGE-L ------------------------------------------------------------------------------
def test_rouge_l_hand_computed() -> None:
    # pred [我 爱 天 安 门 广 场] (7), ref [我 爱 北 京 天 安 门] (7): LCS 我爱天安门 = 5;
    # P = R = 5/7, F = 5/7
    assert rouge_l("我爱天安门广场", "我爱北京天安门") == pytest.approx(5 / 7, abs=TOL)
    # pred [今 天 weather 很 好] (5), ref [今 天 很 好] (4): LCS 4; P = 4/5, R = 4/4;
    # F = 2·0.8·1 / 1.8 = 8/9
    assert rouge_l("今天 weather 很好", "今天很好") == pytest.approx(8 / 9, abs=TOL)
    # pred [a b c d] vs ref [b a d]: LCS is 2 (a d or b d); P = 2/4, R = 2/3; F = 4/7
    assert rouge_l("a b c d", "b a d") == pytest.approx(4 / 7, abs=TOL)
    assert lcs_length(list("abcbdab"), list("bdcaba")) == 4  # the textbook CLRS example
    assert rouge_l("", "") == 0.0  # rouge-score's convention


def test_rouge_l_agrees_with_rouge_score_given_cjk_tokenizer() -> None:
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=CJKTokenizer())
    for pred, ref in zip(PREDS, REFS, strict=True):
        expected = scorer.score(ref, pred)["rougeL"].fmeasure  # score(target, prediction)
        assert rouge_l(pred, ref) == pytest.approx(expected, abs=TOL)
    # On ASCII text our tokens equal rouge-score's default ones, so the default scorer agrees.
    default = rouge_scorer.RougeScorer(["rougeL"])
    assert rouge_l(PREDS[2], REFS[2]) == pytest.approx(
        default.score(REFS[2], PREDS[2])["rougeL"].fmeasure, abs=TOL
    )


def test_rouge_score_default_tokenizer_deletes_chinese() -> None:
    sentence = "退货需要在签收后七天内申请"
    default = rouge_scorer.RougeScorer(["rougeL"]).score(sentence, sentence)["rougeL"]
    assert default.fmeasure == 0.0  # why we tokenize ourselves
    assert rouge_l(sentence, sentence) == 1.0


# -- BLEU / chrF --------------------------------------------------------------------------
def test_bleu_and_chrf_agree_with_sacrebleu_api() -> None:
    assert bleu_tokenizer(REFS) == "zh"
    expected = sacrebleu.corpus_bleu(PREDS, [REFS], tokenize="zh").score
    assert bleu(PREDS, REFS) == pytest.approx(expected, abs=TOL)
    assert 0 < expected < 100
    # The tokenizer matters: 13a keeps a whole Chinese clause as one word.
    assert abs(sacrebleu.corpus_bleu(PREDS, [REFS], tokenize="13a").score - expected) > 1
    assert chrf(PREDS, REFS) == pytest.approx(sacrebleu.corpus_chrf(PREDS, [REFS]).score, abs=TOL)

    english_p, english_r = PREDS[2:3] + ["a cat sat on the mat"], REFS[2:3] + ["the cat sat"]
    assert bleu_tokenizer(english_r) == "13a"
    assert bleu(english_p, english_r) == pytest.approx(
        sacrebleu.corpus_bleu(english_p, [english_r]).score, abs=TOL
    )


def test_bleu_with_a_variable_number_of_references() -> None:
    refs = [[REFS[0], "七天内可以申请退货"], [REFS[1]], [REFS[2], "Two years of warranty.", "x"]]
    streams = [
        [REFS[0], REFS[1], REFS[2]],
        ["七天内可以申请退货", None, "Two years of warranty."],
        [None, None, "x"],
    ]
    expected = sacrebleu.corpus_bleu(PREDS[:3], streams, tokenize="zh").score
    assert bleu(PREDS[:3], refs) == pytest.approx(expected, abs=TOL)
    assert bleu(PREDS[:3], refs) > bleu(PREDS[:3], REFS[:3])  # more references, more matches
    assert chrf(PREDS[:3], refs) == pytest.approx(
        sacrebleu.corpus_chrf(PREDS[:3], streams).score, abs=TOL
    )


def test_bleu_and_chrf_agree_with_the_sacrebleu_command(tmp_path: Path) -> None:
    ref_file, hyp_file = tmp_path / "ref.txt", tmp_path / "hyp.txt"
    ref_file.write_text("\n".join(REFS) + "\n", encoding="utf-8")
    hyp_file.write_text("\n".join(PREDS) + "\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "sacrebleu", str(ref_file), "-i", str(hyp_file)]
    cmd += ["-m", "bleu", "chrf", "-tok", "zh", "-b", "-w", "12"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    cli_bleu, cli_chrf = json.loads(out)
    assert bleu(PREDS, REFS) == pytest.approx(cli_bleu, abs=TOL)
    assert chrf(PREDS, REFS) == pytest.approx(cli_chrf, abs=TOL)


def test_corpus_metrics_reject_bad_shapes() -> None:
    with pytest.raises(BadInputError, match="2 predictions but 1 references"):
        bleu(["a", "b"], ["a"])
    with pytest.raises(BadInputError, match="no predictions"):
        chrf([], [])
    with pytest.raises(BadInputError, match="at least one reference"):
        bleu(["a"], [[]])


# -- classification -----------------------------------------------------------------------
def _labels(seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    classes = ["账单", "物流", "退货", "技术"]
    y_true = [rng.choice(classes) for _ in range(120)]
    # Mostly right, sometimes wrong; "其他" is only ever predicted, "技术" never predicted.
    y_pred = [
        t if rng.random() < 0.6 else rng.choice(["账单", "物流", "退货", "其他"]) for t in y_true
    ]
    y_pred = ["退货" if p == "技术" else p for p in y_pred]
    return y_true, y_pred


def test_classification_report_agrees_with_scikit_learn() -> None:
    y_true, y_pred = _labels(7)
    rep = classification_report(y_true, y_pred)
    labels = sorted(set(y_true) | set(y_pred))
    assert rep["labels"] == labels and "其他" in labels
    assert rep["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=TOL)
    assert accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=TOL)
    p, r, f, _ = skm.precision_recall_fscore_support(
        y_true, y_pred, average="macro", zero_division=0
    )
    assert rep["macro_precision"] == pytest.approx(p, abs=TOL)
    assert rep["macro_recall"] == pytest.approx(r, abs=TOL)
    assert rep["macro_f1"] == pytest.approx(f, abs=TOL)
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    for i, lab in enumerate(labels):
        c = rep["per_class"][lab]
        assert c["precision"] == pytest.approx(p[i], abs=TOL)
        assert c["recall"] == pytest.approx(r[i], abs=TOL)
        assert c["f1"] == pytest.approx(f[i], abs=TOL)
        assert c["support"] == s[i]
    assert rep["per_class"]["技术"]["precision"] == 0.0  # never predicted: zero division → 0
    assert rep["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    assert rep["n"] == 120


def test_classification_report_with_a_given_label_order_and_int_labels() -> None:
    y_true = [2, 0, 1, 1, 0, 2, 2, 10]
    y_pred = [2, 1, 1, 0, 0, 2, 1, 10]
    order = [10, 2, 1, 0]
    rep = classification_report(y_true, y_pred, labels=order)
    assert rep["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred, labels=order).tolist()
    f = skm.f1_score(y_true, y_pred, labels=order, average=None, zero_division=0)
    assert [rep["per_class"][str(k)]["f1"] for k in order] == pytest.approx(list(f), abs=TOL)
    # Default order sorts numerically, as scikit-learn does (10 last, not after 1).
    assert classification_report(y_true, y_pred)["labels"] == [0, 1, 2, 10]


def test_label_metrics_reject_bad_input() -> None:
    with pytest.raises(BadInputError, match="3 true labels but 2 predictions"):
        accuracy(["a", "b", "c"], ["a", "b"])
    with pytest.raises(BadInputError, match="no labels"):
        classification_report([], [])


def test_metric_directions() -> None:
    assert higher_is_better("accuracy") and higher_is_better("macro_f1")
    assert higher_is_better("per_class.billing.f1")
    assert not higher_is_better("perplexity")
    assert not higher_is_better("latency_p95") and not higher_is_better("per_subject.law.nll")
    # robustness: the score lost under perturbation, overall and per kind
    assert not higher_is_better("drop") and not higher_is_better("drop.typo")
    assert higher_is_better("accuracy_perturbed.typo") and higher_is_better("consistency")
