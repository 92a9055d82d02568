"""Evaluation metrics: pure functions over strings and label lists.

Scales: `exact_match`, `token_f1`, `rouge_l`, `accuracy` and the classification scores are
in [0, 1]; `bleu` and `chrf` keep sacrebleu's 0–100 scale (the one papers report).

Chinese text has no spaces, so word-level metrics tokenize with `cjk_tokens`: each
Chinese/Japanese/Korean character is one token and other text is split into lowercased
letter/digit runs. rouge-score's default tokenizer deletes every non-ASCII character, which
scores two identical Chinese sentences 0; `rouge_l` therefore computes the LCS itself over
`cjk_tokens` (it agrees with rouge-score given that tokenizer).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from luodi.errors import BadInputError

# Ideographs (URO, extension A, extensions B–H, compatibility), kana, Hangul jamo and syllables.
_CJK_RANGES = (
    "\u1100-\u11ff"
    "\u3040-\u309f"
    "\u30a0-\u30ff"
    "\u3130-\u318f"
    "\u31f0-\u31ff"
    "\u3400-\u4dbf"
    "\u4e00-\u9fff"
    "\uac00-\ud7af"
    "\uf900-\ufaff"
    "\U00020000-\U0003134f"
)
_CJK_CHAR = re.compile(f"[{_CJK_RANGES}]")
# A CJK character alone, or a run of letters/digits that are not CJK (`_` is not a letter).
_TOKEN = re.compile(f"[{_CJK_RANGES}]|(?:(?![{_CJK_RANGES}])[^\\W_])+")
_SPACES = re.compile(r"\s+")

# Metric names (or `_`-separated parts of them) where a smaller value is better; everything
# else (accuracy, F1, BLEU, ...) is better when larger. Compare and gate use this for the
# direction of a regression. `drop` is robustness's loss of score under perturbation.
LOWER_IS_BETTER_PARTS = frozenset(
    {
        "perplexity",
        "ppl",
        "loss",
        "nll",
        "latency",
        "ttft",
        "rss",
        "bytes",
        "seconds",
        "ms",
        "drop",
    }
)


def higher_is_better(metric: str) -> bool:
    """False when `metric` is a cost (perplexity, loss, nll, latency, ...), True otherwise.

    A metric is a cost when its name, or any `_`/`.`-separated part of it, is one of
    LOWER_IS_BETTER_PARTS (e.g. `perplexity`, `latency_p95`, `per_subject.law.nll`,
    robustness's `drop.typo`).
    """
    parts = re.split(r"[_.]", metric.lower())
    return not any(p in LOWER_IS_BETTER_PARTS for p in parts)


def has_cjk(text: str) -> bool:
    """True when `text` contains at least one Chinese/Japanese/Korean character."""
    return _CJK_CHAR.search(text) is not None


def cjk_tokens(text: str) -> list[str]:
    """Tokens for word-level metrics on mixed Chinese/other text.

    The text is NFKC-normalised (full-width letters and digits become ASCII) and lowercased;
    each CJK character (ideograph, kana, Hangul) is one token; other text is split into runs
    of letters and digits; punctuation, symbols, `_` and whitespace are dropped.
    `cjk_tokens("Luodi 支持LoRA，v2!")` == `["luodi", "支", "持", "lora", "v2"]`.
    """
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).lower())


def normalize_answer(text: str, *, ignore_case: bool = False) -> str:
    """The string exact match compares: NFKC, whitespace collapsed to one space and stripped,
    trailing punctuation (any Unicode P* character, e.g. `。！？.`) removed; optionally
    case-folded."""
    s = _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip()
    end = len(s)
    while end and (unicodedata.category(s[end - 1]).startswith("P") or s[end - 1].isspace()):
        end -= 1
    s = s[:end]
    return s.casefold() if ignore_case else s


def exact_match(pred: str, ref: str, *, ignore_case: bool = False) -> float:
    """1.0 when `normalize_answer(pred) == normalize_answer(ref)`, else 0.0."""
    a = normalize_answer(pred, ignore_case=ignore_case)
    return float(a == normalize_answer(ref, ignore_case=ignore_case))


def token_f1(pred: str, ref: str) -> float:
    """SQuAD-style token F1 over `cjk_tokens`.

    overlap = size of the multiset intersection of the two token lists; precision =
    overlap / len(pred tokens), recall = overlap / len(ref tokens), F1 = 2PR / (P + R).
    When either side has no tokens the score is 1.0 if both are empty, else 0.0 (as SQuAD).
    """
    p, r = cjk_tokens(pred), cjk_tokens(ref)
    if not p or not r:
        return float(p == r)
    overlap = sum((Counter(p) & Counter(r)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(p), overlap / len(r)
    return 2 * precision * recall / (precision + recall)


def lcs_length(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Length of the longest common subsequence of `a` and `b` (O(len(a)·len(b)) time)."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(pred: str, ref: str) -> float:
    """ROUGE-L F-measure over `cjk_tokens`.

    lcs = LCS length of the token lists; P = lcs / len(pred tokens), R = lcs / len(ref
    tokens), F = 2PR / (P + R); 0.0 when either side has no tokens or nothing is shared
    (rouge-score's convention, also for two empty strings).
    """
    p, r = cjk_tokens(pred), cjk_tokens(ref)
    if not p or not r:
        return 0.0
    lcs = lcs_length(p, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def _ref_streams(
    preds: Sequence[str], refs: Sequence[str] | Sequence[Sequence[str]]
) -> list[list[str | None]]:
    """sacrebleu's layout (one stream per reference slot) from one entry per prediction.

    Each entry of `refs` is a string or a list of strings (several references); missing
    slots are None, which sacrebleu skips, so items may have different numbers of references.
    """
    if isinstance(refs, str) or isinstance(preds, str):
        raise BadInputError("bleu/chrf take lists of predictions and references, not a string")
    if len(preds) != len(refs):
        raise BadInputError(f"{len(preds)} predictions but {len(refs)} references")
    if not preds:
        raise BadInputError("no predictions to score")
    per_item = [[r] if isinstance(r, str) else list(r) for r in refs]
    if any(not item for item in per_item):
        raise BadInputError("every prediction needs at least one reference")
    width = max(len(item) for item in per_item)
    return [[item[k] if k < len(item) else None for item in per_item] for k in range(width)]


def bleu_tokenizer(refs: Sequence[str] | Sequence[Sequence[str]]) -> str:
    """sacrebleu tokenizer used by `bleu`: "zh" when any reference contains a CJK character
    (sacrebleu's zh tokenizer splits Chinese characters apart and handles other text like
    13a), else "13a" (sacrebleu's default, WMT's mteval-v13a)."""
    texts = (t for r in refs for t in ([r] if isinstance(r, str) else r))
    return "zh" if any(has_cjk(t) for t in texts) else "13a"


def bleu(preds: Sequence[str], refs: Sequence[str] | Sequence[Sequence[str]]) -> float:
    """Corpus BLEU (0–100) of `preds` against `refs` via sacrebleu.

    `refs[i]` is the reference of `preds[i]`, or a list of references. sacrebleu defaults
    (4-grams, exponential smoothing, case-sensitive) with the tokenizer of `bleu_tokenizer`.
    """
    from sacrebleu.metrics import BLEU

    streams = _ref_streams(preds, refs)
    return float(BLEU(tokenize=bleu_tokenizer(refs)).corpus_score(list(preds), streams).score)


def chrf(preds: Sequence[str], refs: Sequence[str] | Sequence[Sequence[str]]) -> float:
    """Corpus chrF (0–100) via sacrebleu with its defaults (character 6-grams, beta 2,
    whitespace ignored); character-based, so Chinese needs no tokenizer."""
    from sacrebleu.metrics import CHRF

    streams = _ref_streams(preds, refs)
    return float(CHRF().corpus_score(list(preds), streams).score)


def _check_labels(y_true: Sequence[Any], y_pred: Sequence[Any]) -> None:
    if len(y_true) != len(y_pred):
        raise BadInputError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    if not len(y_true):
        raise BadInputError("no labels to score")


def accuracy(y_true: Sequence[Any], y_pred: Sequence[Any]) -> float:
    """Fraction of positions where `y_pred[i] == y_true[i]`."""
    _check_labels(y_true, y_pred)
    return sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true)


def label_order(y_true: Sequence[Any], y_pred: Sequence[Any]) -> list[Any]:
    """Every label seen in either list, sorted (as scikit-learn orders them); labels of mixed
    types that cannot be compared are sorted by their string form."""
    seen = set(y_true) | set(y_pred)
    try:
        return sorted(seen)
    except TypeError:
        return sorted(seen, key=lambda x: (str(x), type(x).__name__))


def _ratio(num: float, den: float) -> float:
    # An empty denominator scores 0, as scikit-learn's zero_division=0.
    return num / den if den else 0.0


def classification_report(
    y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any] | None = None
) -> dict[str, Any]:
    """Accuracy, macro and per-class precision/recall/F1, supports and the confusion matrix.

    `labels` fixes the order (default: `label_order`, every label in either list); labels
    outside it are ignored for the per-class scores and the matrix, as scikit-learn does.
    For class c: precision = TP / predicted c, recall = TP / true c, F1 = 2PR / (P + R), each
    0 when its denominator is 0; macro scores are unweighted means over the classes (macro F1
    is the mean of per-class F1s, not the F1 of macro P and R). Returns::

        {"accuracy", "macro_precision", "macro_recall", "macro_f1", "n",
         "labels": [...], "per_class": {str(label): {"precision", "recall", "f1", "support"}},
         "confusion_matrix": [[...]]}   # rows: true label, columns: predicted, in label order
    """
    _check_labels(y_true, y_pred)
    order = list(labels) if labels is not None else label_order(y_true, y_pred)
    if not order:
        raise BadInputError("no labels to report on")
    if len({str(x) for x in order}) != len(order):
        raise BadInputError(f"labels must be distinct (also as text): {order}")
    index = {lab: i for i, lab in enumerate(order)}
    k = len(order)
    matrix = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        if t in index and p in index:
            matrix[index[t], index[p]] += 1
    # Predictions of labels outside `order` still count against recall, as in scikit-learn.
    true_count = [sum(1 for t in y_true if t == lab) for lab in order]
    pred_count = [sum(1 for p in y_pred if p == lab) for lab in order]
    per_class: dict[str, dict[str, float | int]] = {}
    for i, lab in enumerate(order):
        tp = int(matrix[i, i])
        precision = _ratio(tp, pred_count[i])
        recall = _ratio(tp, true_count[i])
        f1 = _ratio(2 * precision * recall, precision + recall)
        per_class[str(lab)] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": true_count[i],
        }
    return {
        "accuracy": accuracy(y_true, y_pred),
        "macro_precision": float(np.mean([c["precision"] for c in per_class.values()])),
        "macro_recall": float(np.mean([c["recall"] for c in per_class.values()])),
        "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])),
        "n": len(y_true),
        "labels": order,
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
    }
