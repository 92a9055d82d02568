"""Retrieval quality benchmark: luodi's knowledge base against a naive baseline, same run.

Run (from the repository root):

    .venv/bin/python bench/bench_retrieval.py
    .venv/bin/python bench/bench_retrieval.py --embedders e5 --chunk-size 500 --overlap 80

For each embedder (minilm, e5) it builds a knowledge base over the sample documents
(examples/xinghe: handbook, manuals, faq, corpus) with luodi's defaults (structure-aware
chunks, PII masked) in a temporary store, and a naive baseline over the very same documents
and text (read and cleaned by the same loaders): fixed 300-character windows with no overlap
and no structure, embedded with the same embedder, searched dense-only in a flat Faiss index.
Both answer the question set examples/rag/xinghe_questions.jsonl and are scored by the
`retrieval` eval task's own code (luodi.eval.tasks.retrieval: a passage is found when the
chunks ranked up to r cover it).

It prints hit@1, hit@5, recall@5 and MRR (ranks up to 10) for luodi's dense, lexical and
hybrid retrieval (its default RetrieveConfig) and for the baseline, with the ratio of luodi
hybrid to the baseline; then hit@5/MRR per question tag (en-zh: English questions about
Chinese text; paraphrase: Chinese questions sharing few words with the passage); then the
baseline windows searched with luodi's lexical/hybrid retrieval (chunking held fixed); then
luodi's hybrid under other fusion settings (RRF and score fusion, `--sweep-depth`,
`--sweep-weight`); then the relevance-threshold calibration: dense cosines of the chunk that
answers each question vs the best hit of off-topic questions (OFF_TOPIC, below), the
threshold that keeps 95% of the answering chunks, and what the current default and that
threshold do through hybrid search. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

from luodi.config import Settings  # noqa: E402
from luodi.eval.tasks.retrieval import (  # noqa: E402
    Gold,
    GoldIndex,
    Scored,
    by_tag,
    gold_of,
    rank_scores,
    ranking,
    score_retrieval,
)
from luodi.progress import quiet_hf_bars  # noqa: E402
from luodi.rag.answer import DEFAULT_MIN_SCORE  # noqa: E402
from luodi.rag.chunk import Chunk, ChunkConfig, chunk_id, document_text  # noqa: E402
from luodi.rag.embed import Embedder, open_embedder  # noqa: E402
from luodi.rag.index import new_lexical_index, new_vector_index  # noqa: E402
from luodi.rag.kb import KBConfig, add_documents, create_kb, open_kb  # noqa: E402
from luodi.rag.kb_docs import read_document  # noqa: E402
from luodi.rag.retrieve import RetrieveConfig, Retriever  # noqa: E402
from luodi.store import Store  # noqa: E402

FOLDERS = ("handbook", "manuals", "faq", "corpus")
KS = (1, 3, 5, 10)
COLUMNS = ("hit@1", "hit@5", "recall@5", "mrr")


def load_golds(path: Path) -> list[Gold]:
    """The question set as Gold records (the shape a qa dataset record has after ingest)."""
    golds = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        meta = {k: v for k, v in row.items() if k not in ("question", "answer")}
        rec = {
            "id": str(n),
            "messages": [
                {"role": "user", "content": row["question"]},
                {"role": "assistant", "content": row["answer"]},
            ],
            "meta": json.dumps(meta, ensure_ascii=False),
        }
        gold = gold_of(rec)
        if isinstance(gold, str):
            raise SystemExit(f"{path}:{n}: {gold}")
        golds.append(gold)
    return golds


def windows(doc_id: str, source: str, text: str, size: int) -> list[Chunk]:
    """Fixed `size`-character windows of `text`, no overlap, blank ones dropped."""
    out = []
    for start in range(0, len(text), size):
        body = text[start : start + size]
        if body.strip():
            out.append(Chunk(chunk_id(doc_id, body), doc_id, source, body, None, None, start,
                             start + len(body)))  # fmt: skip
    return out


def baseline_retriever(kb: Any, emb: Embedder, size: int) -> Retriever:
    """The naive baseline over the documents of `kb`, read and cleaned the same way."""
    chunks: dict[str, Chunk] = {}
    for doc in kb.documents:
        rd = read_document(Path(doc.path), kb.config.pii_mask, kb.config.pii_allow)
        for c in windows(doc.doc_id, doc.source, document_text(rd.segments), size):
            chunks.setdefault(c.id, c)
    ids = list(chunks)
    vectors = new_vector_index("faiss", emb.dim)
    vectors.add(ids, emb.embed_passages([chunks[i].text for i in ids]))
    lexical = new_lexical_index()
    lexical.add(ids, [chunks[i].text for i in ids])
    return Retriever(chunks, {}, emb, vectors, lexical)


def evaluate(
    retriever: Any, golds: list[Gold], modes: list[str], candidates: int, rrf_k: int
) -> tuple[list[Scored], list[str]]:
    """Each question scored in `modes`; questions whose passage cannot be located are listed."""
    index = GoldIndex(retriever.chunks)
    located, missing = [], []
    for g in golds:
        occ = index.locate(g)
        if isinstance(occ, str):
            missing.append(f"{g.qid}: {occ}")
        else:
            located.append((g, occ))
    scored = score_retrieval(
        retriever, index, located, modes, KS, candidates=candidates, rrf_k=rrf_k
    )
    return scored, missing


def means(scored: list[Scored], mode: str) -> dict[str, float]:
    """hit@1, hit@5, recall@5 and MRR of `mode`, averaged over the questions."""
    n = max(1, len(scored))
    return {c: sum(q.scores[f"{mode}.{c}"] for q in scored) / n for c in COLUMNS}


def print_rows(rows: list[tuple[str, dict[str, float]]], base: dict[str, float]) -> None:
    print(f"  {'retrieval':<40}" + "".join(f"{c:>10}" for c in COLUMNS))
    for name, vals in rows:
        print(f"  {name:<40}" + "".join(f"{vals[c]:>10.3f}" for c in COLUMNS))
    print(f"  {'(hybrid / baseline)':<40}", end="")
    hybrid = dict(rows)["luodi hybrid"]
    print("".join(f"{hybrid[c] / base[c] if base[c] else float('inf'):>9.2f}x" for c in COLUMNS))


def bench_embedder(name: str, golds: list[Gold], args: argparse.Namespace, home: Path) -> None:
    store = Store(Settings(home=home / name))
    with quiet_hf_bars():
        emb = open_embedder(name)
    t0 = time.perf_counter()
    create_kb(
        store,
        KBConfig(
            name="xinghe",
            embedder=name,
            chunk=ChunkConfig(size=args.chunk_size, overlap=args.overlap),
        ),
    )
    change = add_documents(store, "xinghe", [args.docs / f for f in FOLDERS])
    build = time.perf_counter() - t0
    kb = open_kb(store, "xinghe")
    t0 = time.perf_counter()
    base = baseline_retriever(kb, emb, args.window)
    base_build = time.perf_counter() - t0
    print(
        f"\n== {name}: luodi {kb.info.documents} documents -> {kb.info.chunks} chunks "
        f"({build:.1f} s incl. reading); baseline {len(base.chunks)} windows of {args.window} "
        f"chars ({base_build:.1f} s); skipped: {', '.join(s.file for s in change.skipped)}"
    )
    modes = ["dense", "lexical", "hybrid"]
    ours, missing = evaluate(kb.retriever, golds, modes, args.candidates, args.rrf_k)
    theirs, base_missing = evaluate(base, golds, modes, args.candidates, args.rrf_k)
    for label, miss in (("luodi", missing), ("baseline", base_missing)):
        for m in miss:
            print(f"  not located ({label}): {m}")
    b = means(theirs, "dense")
    print(f"  {len(ours)} questions; MRR counts ranks up to {max(KS)}")
    rows = [(f"luodi {m}", means(ours, m)) for m in modes] + [("baseline (300-char, dense)", b)]
    print_rows(rows, b)

    print("  per tag: hit@5 / MRR")
    ours_tags, base_tags = by_tag(ours, modes, KS), by_tag(theirs, ["dense"], KS)
    for tag, v in ours_tags.items():
        cells = "  ".join(f"{m} {v[f'{m}.hit@5']:.2f}/{v[f'{m}.mrr']:.2f}" for m in modes)
        bv = base_tags[tag]
        print(f"    {tag:<15} n={v['items']:<3} {cells}  baseline "
              f"{bv['dense.hit@5']:.2f}/{bv['dense.mrr']:.2f}")  # fmt: skip

    print("  diagnostics: baseline windows through luodi's lexical / hybrid (chunking fixed)")
    for m in ("lexical", "hybrid"):
        v = means(theirs, m)
        print(f"    300-char windows, {m:<8}" + "".join(f"{v[c]:>10.3f}" for c in COLUMNS))
    print_fusions(kb.retriever, ours, args)
    calibrate(name, kb.retriever, ours, args)
    store.close()


def fusion_settings(args: argparse.Namespace) -> list[tuple[str, RetrieveConfig]]:
    """The hybrid settings compared: RRF and score fusion over a few fusion depths and dense
    weights (luodi's default among them)."""
    out = []
    for depth in args.sweep_depth:
        out.append((f"rrf k={args.rrf_k} depth {depth}", {"fusion": "rrf", "fuse_depth": depth}))
        for w in args.sweep_weight:
            out.append((f"score w={w} depth {depth}", {"fusion": "score", "fuse_depth": depth,
                                                       "dense_weight": w}))  # fmt: skip
    base = {"mode": "hybrid", "top_k": max(KS), "candidates": args.candidates, "rrf_k": args.rrf_k}
    return [(label, RetrieveConfig(**base, **fields)) for label, fields in out]


def print_fusions(retriever: Retriever, scored: list[Scored], args: argparse.Namespace) -> None:
    """hit@1, hit@5, recall@5 and MRR of luodi's hybrid under each fusion setting."""
    default = RetrieveConfig()
    print(f"  hybrid fusion settings (default: {default.fusion}, depth {default.fuse_depth}, "
          f"dense weight {default.dense_weight})")  # fmt: skip
    index = GoldIndex(retriever.chunks)
    for label, cfg in fusion_settings(args):
        rows = []
        for q in scored:
            ranked = ranking(retriever, q, cfg)
            rows.append(
                rank_scores(index.first_ranks([r.chunk for r in ranked], q.located), KS, "x")
            )
        v = {c: sum(r[f"x.{c}"] for r in rows) / max(1, len(rows)) for c in COLUMNS}
        print(f"    {label:<38}" + "".join(f"{v[c]:>10.3f}" for c in COLUMNS))


# Questions about nothing in the sample company's documents (for the relevance threshold).
OFF_TOPIC = (
    "法国大革命是哪一年爆发的？",
    "How do I bake sourdough bread at home?",
    "光合作用的化学方程式是什么？",
    "Who won the 2018 FIFA World Cup?",
    "推荐几部好看的科幻电影",
    "What is the capital of Australia?",
    "怎么给猫剪指甲？",
    "Explain the rules of cricket.",
    "李白最有名的诗是哪一首？",
    "How far is the Moon from the Earth?",
    "股票的市盈率怎么计算？",
    "What's a good recipe for vegetarian lasagna?",
)
KEEP = 0.95
ENGLISH_ONLY = {"minilm"}
"""Embedders that cannot read Chinese: calibrated on the English questions only."""
_CJK = re.compile(r"[\u3400-\u9fff]")
QUANTILES = (("min", 0.0), ("p5", 0.05), ("p25", 0.25), ("p50", 0.5), ("max", 1.0))
"""Share of answerable questions whose answering chunk must pass the chosen threshold."""


def quantile(values: list[float], q: float) -> float:
    """The q-quantile of `values` by the lower nearest rank (no interpolation)."""
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def calibrate(
    name: str, retriever: Retriever, scored: list[Scored], args: argparse.Namespace
) -> None:
    """The dense cosines that decide "nothing relevant" (RagSettings.min_score), and what
    thresholds do.

    Distributions: per answerable question, the cosine of the chunk at its passage's first
    dense rank (the answering chunk; missing when dense search does not find it in the
    candidates) and of its best hit; per off-topic question (OFF_TOPIC) its best hit. Then, for
    thresholds around the proposal, through hybrid search with top_k 4 (what a deployment puts
    in the prompt): the share of answering chunks that pass, of answerable questions answered
    (the search returns something), hit@4, and of off-topic questions refused by dense alone
    and by hybrid (which also keeps lexical top-k hits). Proposed: the highest threshold (2
    decimals) that keeps >= KEEP of the answering chunks dense search finds at all; chosen: the
    highest threshold at which, in both hybrid and dense mode, >= KEEP of the answerable
    questions are answered and hit@4 stays >= KEEP of its value without a threshold. An
    English-only embedder is calibrated on the English questions (no threshold makes it read
    Chinese)."""
    off_topic = list(OFF_TOPIC)
    if name in ENGLISH_ONLY:
        scored = [q for q in scored if not _CJK.search(q.gold.question)]
        off_topic = [x for x in off_topic if not _CJK.search(x)]
    index = GoldIndex(retriever.chunks)
    gold_cos: list[float] = []
    for q in scored:
        ranks = index.first_ranks([retriever.chunks[h.id] for h in q.dense], q.located)
        found = [r for r in ranks if r is not None]
        gold_cos.append(q.dense[min(found) - 1].score if found else float("-inf"))
    best = [q.dense[0].score for q in scored if q.dense]
    n = max(args.candidates, 10)
    off_dense = retriever.vectors.search(retriever.embedder.embed_queries(off_topic), n)
    off_dense = [[h for h in hs if h.id in retriever.chunks] for hs in off_dense]
    off_lexical = [retriever.lexical.search(x, n) for x in off_topic]
    off = [hs[0].score for hs in off_dense if hs]
    print(f"  relevance threshold (dense cosine) for {name}: {len(scored)} answerable, "
          f"{len(off)} off-topic questions")  # fmt: skip
    for label, vals in (("answerable, answering chunk", gold_cos),
                        ("answerable, best hit", best), ("off-topic, best hit", off)):  # fmt: skip
        finite = [v for v in vals if v != float("-inf")]
        qs = "  ".join(f"{k} {quantile(finite, p):.3f}" for k, p in QUANTILES)
        print(f"    {label:<30} {qs}" + (f"  (not in top {args.candidates}: "
              f"{len(vals) - len(finite)})" if len(finite) < len(vals) else ""))  # fmt: skip
    ok = sorted(v for v in gold_cos if v != float("-inf"))
    need = math.ceil(KEEP * len(ok))  # answering chunks that must pass
    proposed = math.floor(ok[len(ok) - need] * 100) / 100 if ok else None
    current = DEFAULT_MIN_SCORE.get(name)
    print(f"    proposed (keeps >= {KEEP:.0%} of the answering chunks found): {proposed}; "
          f"current default: {current}")  # fmt: skip
    print(f"    {'':<21}{'answered / hit@4':>18}{'off-topic refused':>35}")
    print(f"    {'threshold':<10}{'chunk kept':>11}{'hybrid':>14}{'dense':>16}{'hybrid':>15}"
          f"{'dense':>12}")  # fmt: skip
    chosen, ref = None, None
    # From just under the proposal up to where every off-topic question is refused.
    lo = round((proposed or 0) * 100) - 2
    hi = max(lo + 6, math.ceil(max(off, default=0) * 100) + 1)
    grid = {current, proposed} | {x / 100 for x in range(lo, min(hi, lo + 30) + 1)}
    for t in [None, *sorted({round(x, 2) for x in grid if x is not None})]:
        kept = sum(t is None or v >= t for v in gold_cos) / len(gold_cos)
        cells = []
        for mode in ("hybrid", "dense"):
            cfg = RetrieveConfig(mode=mode, top_k=4, min_score=t)
            got = [retriever.combine(q.gold.question, q.dense, q.lexical, cfg) for q in scored]
            hit = [
                any(r is not None for r in index.first_ranks([x.chunk for x in g], q.located))
                for g, q in zip(got, scored, strict=True)
            ]
            off_got = [
                retriever.combine(x, d, lx, cfg)
                for x, d, lx in zip(off_topic, off_dense, off_lexical, strict=True)
            ]
            answered = sum(bool(g) for g in got) / len(got)
            cells.append((answered, sum(hit) / len(hit), sum(not g for g in off_got) / len(off)))
        (ha, hh, hr), (da, dh, dr) = cells
        if t is None:
            ref = (hh, dh)
        elif ref and min(ha, da) >= KEEP and hh >= KEEP * ref[0] and dh >= KEEP * ref[1]:
            chosen = t
        label = "none" if t is None else f"{t:.2f}"
        print(f"    {label:<10}{kept:>11.3f}{ha:>18.3f} / {hh:.3f}{da:>10.3f} / {dh:.3f}"
              f"{hr:>23.3f}{dr:>12.3f}")  # fmt: skip
    print(f"    chosen (>= {KEEP:.0%} answered and of hit@4, hybrid and dense): {chosen}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--embedders", default="minilm,e5", help="comma-separated embedder names")
    p.add_argument("--docs", type=Path, default=ROOT / "examples" / "xinghe")
    p.add_argument("--questions", type=Path, default=ROOT / "examples/rag/xinghe_questions.jsonl")
    p.add_argument("--window", type=int, default=300, help="baseline window, characters")
    p.add_argument("--chunk-size", type=int, default=ChunkConfig().size)
    p.add_argument("--overlap", type=int, default=ChunkConfig().overlap)
    p.add_argument("--candidates", type=int, default=50, help="per retriever before fusion")
    p.add_argument("--rrf-k", type=int, default=60)
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    floats = lambda s: [float(x) for x in s.split(",") if x]  # noqa: E731
    p.add_argument("--sweep-depth", type=ints, default=[10, 20, 50],
                   help="comma-separated fusion depths compared ('' to skip)")  # fmt: skip
    p.add_argument("--sweep-weight", type=floats, default=[0.5, 0.6, 0.7, 0.8],
                   help="comma-separated dense weights of score fusion compared")  # fmt: skip
    args = p.parse_args()
    golds = load_golds(args.questions)
    print(f"question set: {args.questions} ({len(golds)} questions)")
    with tempfile.TemporaryDirectory(prefix="luodi-bench-retrieval-") as tmp:
        for name in [e.strip() for e in args.embedders.split(",") if e.strip()]:
            bench_embedder(name, golds, args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
