"""Retrieval quality benchmark: luodi's knowledge base against a naive baseline, same run.

Run (from the repository root):

    .venv/bin/python bench/bench_retrieval.py
    .venv/bin/python bench/bench_retrieval.py --embedders e5 --rrf-k 60 --candidates 50

For each embedder (minilm, e5) it builds a knowledge base over the sample documents
(examples/xinghe: handbook, manuals, faq, corpus) with luodi's defaults (structure-aware
chunks of <= 500 characters, 80 of overlap, PII masked) in a temporary store, and a naive
baseline over the very same documents and text (read and cleaned by the same loaders):
fixed 300-character windows with no overlap and no structure, embedded with the same
embedder, searched dense-only in a flat Faiss index. Both answer the question set
examples/rag/xinghe_questions.jsonl and are scored by the `retrieval` eval task's own code
(luodi.eval.tasks.retrieval: a passage is found when the chunks ranked up to r cover it).

It prints hit@1, hit@5, recall@5 and MRR (ranks up to 10) for luodi's dense, lexical and
hybrid retrieval and for the baseline, with the ratio of luodi hybrid to the baseline; then
hit@5/MRR per question tag (en-zh: English questions about Chinese text; paraphrase: Chinese
questions sharing few words with the passage); then diagnostics that separate the causes: the
baseline windows searched with luodi's lexical/hybrid retrieval (chunking held fixed), luodi's
hybrid with other RRF settings (`--sweep-candidates`, `--sweep-rrf-k`), and luodi's dense and
lexical candidates fused by score instead of rank (min-max normalised, `--alpha` dense weight;
a what-if computed here, not a luodi option). Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
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
    score_retrieval,
)
from luodi.progress import quiet_hf_bars  # noqa: E402
from luodi.rag.chunk import Chunk, ChunkConfig, chunk_id, document_text  # noqa: E402
from luodi.rag.embed import Embedder, open_embedder  # noqa: E402
from luodi.rag.index import new_lexical_index, new_vector_index  # noqa: E402
from luodi.rag.kb import KBConfig, add_documents, create_kb, open_kb  # noqa: E402
from luodi.rag.kb_docs import read_document  # noqa: E402
from luodi.rag.retrieve import Retriever  # noqa: E402
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
    if args.sweep_candidates and args.sweep_rrf_k:
        print("  diagnostics: luodi hybrid hit@5 / MRR by fusion candidates per retriever (rows)")
        print("  and rrf_k (columns); at most max(candidates, 10) of each list are fused")
        print("    " + " " * 16 + "".join(f"{'rrf_k ' + str(k):>16}" for k in args.sweep_rrf_k))
        for n in args.sweep_candidates:
            cells = []
            for k in args.sweep_rrf_k:
                v = means(evaluate(kb.retriever, golds, ["hybrid"], n, k)[0], "hybrid")
                cells.append(f"{v['hit@5']:.3f} / {v['mrr']:.3f}")
            print(f"    candidates {n:<5}" + "".join(f"{c:>16}" for c in cells))
    print(f"  diagnostics: luodi candidates fused by score, alpha {args.alpha} dense (what-if)")
    for n in args.sweep_candidates or [args.candidates]:
        v = score_fusion(kb, ours, args.alpha, n)
        print(f"    candidates {n:<5}" + "".join(f"{v[c]:>10.3f}" for c in COLUMNS))
    store.close()


def score_fusion(kb: Any, scored: list[Scored], alpha: float, n: int) -> dict[str, float]:
    """Means of `COLUMNS` when each question's top `n` dense and lexical candidates are fused
    by alpha * dense + (1 - alpha) * lexical, each min-max normalised over its list."""
    index = GoldIndex(kb.chunks)
    rows = []
    for q in scored:

        def norm(hits: list[Any]) -> dict[str, float]:
            hi, lo = (
                max((h.score for h in hits), default=0),
                min((h.score for h in hits), default=0),
            )
            return {h.id: (h.score - lo) / (hi - lo) if hi > lo else 1.0 for h in hits}

        d, lx = norm(q.dense[:n]), norm(q.lexical[:n])
        ids = sorted(
            d.keys() | lx.keys(), key=lambda i: -(alpha * d.get(i, 0) + (1 - alpha) * lx.get(i, 0))
        )
        ranks = index.first_ranks([kb.chunks[i] for i in ids[: max(KS)]], q.located)
        rows.append(rank_scores(ranks, KS, "x"))
    return {c: sum(r[f"x.{c}"] for r in rows) / max(1, len(rows)) for c in COLUMNS}


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
    p.add_argument("--alpha", type=float, default=0.7, help="dense weight of the score fusion")
    p.add_argument(
        "--sweep-candidates",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[10, 20, 50],
        help="comma-separated candidate counts for the fusion diagnostic ('' to skip)",
    )
    p.add_argument(
        "--sweep-rrf-k",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[5, 20, 60],
        help="comma-separated rrf_k values for the fusion diagnostic ('' to skip)",
    )
    args = p.parse_args()
    golds = load_golds(args.questions)
    print(f"question set: {args.questions} ({len(golds)} questions)")
    with tempfile.TemporaryDirectory(prefix="luodi-bench-retrieval-") as tmp:
        for name in [e.strip() for e in args.embedders.split(",") if e.strip()]:
            bench_embedder(name, golds, args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
