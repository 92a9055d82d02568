"""Near-duplicate detection: MinHash estimates, LSH clustering and the `near_dedup` operator.

References: exact character 5-gram Jaccard computed here with Python sets, datasketch's MinHash
on the same shingles, and brute-force clustering (all pairs, union-find) of small corpora.
"""

from __future__ import annotations

import math
import random
import re

import numpy as np
import pytest
from datasketch import MinHash

from luodi.data import minhash as mh
from luodi.data.minhash import (
    cluster_near_duplicates,
    estimate_jaccard,
    exact_jaccard,
    lsh_params,
    normalize,
    signatures,
)
from luodi.data.ops import Recipe
from luodi.data.pipeline import run_ops
from luodi.data.records import get_kind, make_record
from luodi.errors import BadInputError

ZH_A = (
    "为进一步规范生产现场管理，提升产品质量和交付能力，公司决定自下月起在苏州工厂全面推行新的"
    "作业指导书。各车间主任须组织班组长学习新版文件，明确每道工序的检验标准和记录要求，并在"
    "本周五前将培训签到表提交至质量部。对于未按规定执行的班组，质量部将在月度例会上通报，并"
    "纳入绩效考核。设备部同时负责更新点检表，确保关键设备的润滑与校准按时完成。"
)
ZH_B = (
    "财务部提醒各部门注意年度预算编制的时间安排。预算草案应包括人员费用、差旅费用、培训费用"
    "以及固定资产采购计划，并附上与上一年度实际支出的对比说明。超过五十万元的单项支出需要"
    "单独列示理由和预期收益。所有材料请通过内部系统提交，纸质版本不再受理。逾期提交的部门"
    "将按照上一年度的实际支出水平核定预算，请各部门负责人予以重视。"
)
EN_A = (
    "The quarterly maintenance review found that the hydraulic press on line three had "
    "exceeded its inspection interval by two weeks. The production team agreed to schedule a "
    "full inspection during the next planned downtime, to replace the worn seals, and to "
    "record every lubrication step in the new digital checklist so that the interval is not "
    "missed again. Quality will audit the checklist at the end of the month."
)
EN_B = (
    "Starting next month, all travel requests must be submitted through the new expense "
    "portal at least ten working days before departure. Requests for international travel "
    "also need approval from the department head and a short business justification. "
    "Receipts should be uploaded within five days of return; late claims will be reviewed "
    "case by case and may be reimbursed only partially."
)


def shingle_set(text: str, n: int = 5) -> set[str]:
    """Reference shingles: character n-grams of the normalized text (whole text if shorter)."""
    t = normalize(text)
    return {t[i : i + n] for i in range(max(1, len(t) - n + 1))}


def jaccard_ref(a: str, b: str, n: int = 5) -> float:
    sa, sb = shingle_set(a, n), shingle_set(b, n)
    return len(sa & sb) / len(sa | sb)


def replace_chars(text: str, positions: list[int], pool: str) -> str:
    chars = list(text)
    for k, p in enumerate(positions):
        chars[p] = pool[k % len(pool)] if pool[k % len(pool)] != chars[p] else "※"
    return "".join(chars)


def random_doc(rng: random.Random, chars: int = 400) -> str:
    words = ["order", "plant", "quality", "supplier", "invoice", "shift", "line", "audit"]
    out: list[str] = []
    size = 0
    while size < chars:
        if rng.random() < 0.5:
            piece = "".join(chr(rng.randrange(0x4E00, 0x4E00 + 2500)) for _ in range(20))
        else:
            piece = " ".join(rng.choice(words) + str(rng.randrange(100)) for _ in range(4))
        out.append(piece)
        size += len(piece) + 1
    return " ".join(out)


def edit(rng: random.Random, doc: str, n_edits: int) -> str:
    """`doc` with `n_edits` single characters replaced at random positions."""
    return replace_chars(doc, rng.sample(range(len(doc)), n_edits), "质量部门ABXYZ0189")


def brute_force_clusters(texts: list[str], threshold: float) -> list[int]:
    """All pairs by exact Jaccard, then components represented by their smallest index."""
    parent = list(range(len(texts)))

    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            if jaccard_ref(texts[i], texts[j]) >= threshold:
                ri, rj = find(i), find(j)
                parent[max(ri, rj)] = min(ri, rj)
    return [find(i) for i in range(len(texts))]


def test_estimates_match_exact_jaccard_and_datasketch() -> None:
    pairs = [
        (ZH_A, replace_chars(ZH_A, [10, 60, 110], "甲乙丙")),
        (ZH_A, ZH_A[: len(ZH_A) // 2] + ZH_B[len(ZH_B) // 2 :]),
        (EN_A, EN_A.replace("three", "four").replace("month", "quarter")),
        (EN_A, EN_A[:200] + EN_B[200:]),
        (EN_A, EN_B),
        (ZH_A, ZH_A),
    ]
    k = 256
    for a, b in pairs:
        exact = jaccard_ref(a, b)
        sig = signatures([a, b], num_perm=k, seed=3)
        est = estimate_jaccard(sig[0], sig[1])
        ref = MinHash(num_perm=k, seed=3)
        ref2 = MinHash(num_perm=k, seed=3)
        ref.update_batch([s.encode() for s in shingle_set(a)])
        ref2.update_batch([s.encode() for s in shingle_set(b)])
        ds = ref.jaccard(ref2)
        sd = math.sqrt(max(exact * (1 - exact), 0.01) / k)
        assert exact_jaccard(a, b) == pytest.approx(exact, abs=2e-3)
        assert abs(est - exact) <= 4 * sd, (exact, est)
        assert abs(ds - exact) <= 4 * sd, (exact, ds)
        assert abs(est - ds) <= 8 * sd
    sig = signatures([ZH_A, ZH_A])
    assert estimate_jaccard(sig[0], sig[1]) == 1.0


def test_estimator_error_has_the_minhash_variance() -> None:
    # Unbiased with variance J(1-J)/k, as for truly random permutations: checks the
    # multiply-add hash family over many pairs of random documents at varied similarity.
    rng = random.Random(7)
    k = 128
    a_docs, b_docs = [], []
    for i in range(150):
        doc = random_doc(rng, 300)
        a_docs.append(doc)
        b_docs.append(edit(rng, doc, 2 + i % 25))
    sig = signatures(a_docs + b_docs, num_perm=k)
    est = estimate_jaccard(sig[:150], sig[150:])
    exact = np.array([jaccard_ref(a, b) for a, b in zip(a_docs, b_docs, strict=True)])
    z = (est - exact) / np.sqrt(exact * (1 - exact) / k)
    assert abs(z.mean()) < 0.3  # mean of 150 standard normals: sd 0.08
    assert 0.75 < z.std() < 1.25


def test_chinese_near_duplicates_cluster_and_unrelated_do_not() -> None:
    near = replace_chars(ZH_A, [25, 130], "乙丁")
    assert jaccard_ref(ZH_A, near) > 0.85
    assert cluster_near_duplicates([ZH_A, ZH_B, near]) == [0, 1, 0]


def test_english_near_duplicates_cluster() -> None:
    near = EN_A.replace("two weeks", "three weeks").replace("Quality", "QA")
    assert cluster_near_duplicates([EN_B, EN_A, near]) == [0, 1, 1]
    # Case and whitespace do not matter: they are normalized away.
    assert cluster_near_duplicates([EN_A, "  " + EN_A.upper().replace(" ", "\n ")]) == [0, 0]


def test_exact_duplicates_cluster_and_the_representative_is_the_first() -> None:
    texts = [EN_B, ZH_A, EN_A, ZH_A, EN_A, ZH_B, ZH_A]
    assert cluster_near_duplicates(texts) == [0, 1, 2, 1, 2, 5, 1]
    # Chains: the later copies point at the first even when it is not their closest match.
    rng = random.Random(1)
    base = random_doc(rng, 600)
    texts = [base] + [edit(rng, base, 3) for _ in range(79)]
    assert cluster_near_duplicates(texts) == [0] * 80


def test_matches_brute_force_clustering() -> None:
    rng = random.Random(11)
    texts: list[str] = []
    for _ in range(20):
        base = random_doc(rng, 300)
        texts.append(base)
        # Edits from a few to many: similarities spread across the threshold.
        texts.extend(edit(rng, base, rng.choice([2, 6, 10, 14, 20])) for _ in range(2))
    rng.shuffle(texts)
    assert cluster_near_duplicates(texts, threshold=0.7) == brute_force_clusters(texts, 0.7)


def test_short_and_empty_texts() -> None:
    texts = ["", "a", "ab", "ab", "AB ", "abcd", "abcde", "abcdef", "", "x"]
    reps = cluster_near_duplicates(texts)
    assert reps == [0, 1, 2, 2, 2, 5, 6, 7, 0, 9]
    assert cluster_near_duplicates([]) == []
    assert cluster_near_duplicates(["只有"]) == [0]


def test_deterministic_in_seed_and_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(3)
    texts = [random_doc(rng, 200) for _ in range(40)]
    texts += [edit(rng, t, 3) for t in texts[:10]]
    one = signatures(texts, seed=5, workers=1)
    assert np.array_equal(one, signatures(texts, seed=5, workers=1))
    assert not np.array_equal(one, signatures(texts, seed=6, workers=1))
    # Small chunks force the process pool on a small input: same signatures, same order.
    monkeypatch.setattr(mh, "CHUNK_DOCS", 8)
    pools: list[int] = []

    class SpyPool(mh.ProcessPoolExecutor):
        def __init__(self, max_workers: int, **kw: object) -> None:
            pools.append(max_workers)
            super().__init__(max_workers, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(mh, "ProcessPoolExecutor", SpyPool)
    assert np.array_equal(one, signatures(texts, seed=5, workers=2))
    assert pools == [2]
    reps = cluster_near_duplicates(texts, seed=5, workers=2)
    assert reps == list(range(40)) + list(range(10))


def test_lsh_params_make_threshold_pairs_candidates() -> None:
    for threshold, k in [(0.8, 128), (0.5, 128), (0.9, 256), (0.7, 64)]:
        bands, rows = lsh_params(threshold, k)
        assert bands * rows <= k
        assert 1 - (1 - threshold**rows) ** bands >= 0.999
        # One more row per band would miss the target: the choice is the most selective.
        b2 = k // (rows + 1)
        assert b2 == 0 or 1 - (1 - threshold ** (rows + 1)) ** b2 < 0.999


def test_bad_parameters_are_bad_input() -> None:
    with pytest.raises(BadInputError, match="threshold"):
        cluster_near_duplicates(["a"], threshold=1.5)
    with pytest.raises(BadInputError, match="ngram"):
        cluster_near_duplicates(["a"], ngram=0)
    with pytest.raises(BadInputError, match="threshold"):
        Recipe(operators=[{"op": "near_dedup", "threshold": 0}]).build(get_kind("text"))


@pytest.mark.parametrize("exact_verify", [True, False])
def test_operator_drops_later_near_duplicates(exact_verify: bool) -> None:
    kind = get_kind("text")
    texts = [ZH_A, EN_A, replace_chars(ZH_A, [40, 90], "丙丁"), ZH_B, EN_A, EN_B, ZH_A]
    recs = [
        make_record(
            kind, source="s.jsonl", source_sha256="0", location=f"line {i}", ordinal=i, text=t
        )
        for i, t in enumerate(texts)
    ]
    ops = Recipe(operators=[{"op": "near_dedup", "exact_verify": exact_verify}]).build(kind)
    kept: list[dict] = []
    result = run_ops(ops, [recs[:3], recs[3:]], kept.extend)
    assert [r["id"] for r in kept] == [recs[i]["id"] for i in (0, 1, 3, 5)]
    st = result.operators[0]
    assert (st.records_in, st.kept, st.dropped) == (7, 4, 3)
    assert st.drop_reasons == {"near_duplicate": 3}
    details = sorted(e["detail"] for e in st.examples["near_duplicate"])
    expected_near = estimate_jaccard(*signatures([ZH_A, texts[2]]))
    assert details == sorted(
        [
            f"~{expected_near:.2f} with {recs[0]['id']}",
            f"~1.00 with {recs[1]['id']}",
            f"~1.00 with {recs[0]['id']}",
        ]
    )
    assert all(re.fullmatch(r"~[01]\.\d\d with [0-9a-f]{16}", d) for d in details)


def test_operator_on_qa_records_and_shared_ids() -> None:
    kind = get_kind("qa")

    def qa(i: int, answer: str, ordinal: int) -> dict:
        msgs = [{"role": "user", "content": f"问题{i}"}, {"role": "assistant", "content": answer}]
        return make_record(
            kind, source="q", source_sha256="0", location="x", ordinal=ordinal, messages=msgs
        )

    recs = [qa(1, ZH_A, 0), qa(1, ZH_A, 1), qa(2, ZH_B, 2)]
    # Same id as the kept first record: never dropped, whatever the clustering says.
    recs.append({**recs[1], "id": recs[0]["id"]})
    ops = Recipe(operators=[{"op": "near_dedup"}]).build(kind)
    kept: list[dict] = []
    run_ops(ops, [recs], kept.extend)
    assert [r["id"] for r in kept] == [recs[0]["id"], recs[2]["id"], recs[0]["id"]]
