"""Near-dedup bench: luodi's vectorized MinHash LSH against a datasketch loop, same documents.

Run from the repository root:

    .venv/bin/python bench/bench_dedup.py --n 100000

Target (the issue): 100,000 documents of ~1 KB (mixed Chinese/English, 10% exact and 10% near
duplicates planted, `bench/corpus.py`) clustered in under 40 s on 2 cores, finding >= 99.9% of
the planted near duplicates. Reported per engine: wall time of clustering alone (generation
excluded), recall of planted near and exact duplicates (a pair counts when both land in one
cluster), and false positives: sampled (member, representative) pairs whose true character
5-gram Jaccard is below threshold - 0.1.

The baseline is the straightforward loop: datasketch `MinHash(num_perm=128)` over the same
5-gram shingles, `MinHashLSH(threshold)` query-then-insert per document, union-find over the
candidates (no verification, as datasketch returns them), single process. `--baseline-n`
limits it to the first N documents; its time is then scaled linearly to --n (said in the
table). `--baseline-n 0` skips it.
"""

from __future__ import annotations

import argparse
import random
import resource
import time
from collections.abc import Sequence

from datasketch import MinHash, MinHashLSH

from corpus import jaccard, make_docs
from luodi.data.minhash import cluster_near_duplicates, normalize

NUM_PERM = 128
NGRAM = 5


def datasketch_clusters(docs: Sequence[str], threshold: float) -> list[int]:
    """Cluster representatives (smallest index) with a datasketch MinHash LSH loop."""
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    parent = list(range(len(docs)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, doc in enumerate(docs):
        t = normalize(doc)
        shingles = {t[k : k + NGRAM] for k in range(max(1, len(t) - NGRAM + 1))}
        m = MinHash(num_perm=NUM_PERM)
        m.update_batch([s.encode("utf-8") for s in shingles])
        for j in lsh.query(m):
            ri, rj = find(i), find(j)
            parent[max(ri, rj)] = min(ri, rj)
        lsh.insert(i, m)
    return [find(i) for i in range(len(docs))]


def recall(reps: Sequence[int], pairs: Sequence[tuple[int, int]], n: int) -> tuple[float, int]:
    """Fraction of planted (dup, original) pairs within the first n docs found in one cluster."""
    inside = [(d, o) for d, o in pairs if d < n and o < n]
    if not inside:
        return float("nan"), 0
    return sum(reps[d] == reps[o] for d, o in inside) / len(inside), len(inside)


def false_positives(
    docs: Sequence[str], reps: Sequence[int], threshold: float, sample: int, seed: int
) -> tuple[int, int]:
    """(bad, checked): sampled (member, representative) pairs with true J < threshold - 0.1."""
    members = [i for i, r in enumerate(reps) if r != i]
    picked = random.Random(seed).sample(members, min(sample, len(members)))
    bad = sum(
        jaccard(normalize(docs[i]), normalize(docs[reps[i]]), NGRAM) < threshold - 0.1
        for i in picked
    )
    return bad, len(picked)


def main() -> None:
    """Parse flags, run both engines on the same generated corpus, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="documents to generate")
    ap.add_argument("--threshold", type=float, default=0.8, help="Jaccard threshold")
    ap.add_argument("--baseline-n", type=int, default=None, help="baseline docs (default --n)")
    ap.add_argument("--workers", type=int, default=2, help="luodi worker processes")
    ap.add_argument("--fp-sample", type=int, default=2000, help="pairs checked for FPs")
    ap.add_argument("--seed", type=int, default=0, help="corpus seed")
    args = ap.parse_args()
    base_n = args.n if args.baseline_n is None else min(args.baseline_n, args.n)

    t0 = time.perf_counter()
    docs, truth = make_docs(args.n, doc_chars=1000, exact_dup=0.1, near_dup=0.1, seed=args.seed)
    size_mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    print(
        f"corpus: {args.n} docs, {size_mb:.1f} MB UTF-8, {len(truth['exact'])} exact and "
        f"{len(truth['near'])} near duplicates planted ({time.perf_counter() - t0:.1f} s)"
    )

    t0 = time.perf_counter()
    reps = cluster_near_duplicates(
        docs, threshold=args.threshold, num_perm=NUM_PERM, ngram=NGRAM, workers=args.workers
    )
    ours_s = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ours = {
        "time": ours_s,
        "near": recall(reps, truth["near"], args.n),
        "exact": recall(reps, truth["exact"], args.n),
        "fp": false_positives(docs, reps, args.threshold, args.fp_sample, args.seed),
        "dups": sum(r != i for i, r in enumerate(reps)),
    }

    base: dict | None = None
    if base_n > 0:
        sub = docs[:base_n]
        t0 = time.perf_counter()
        breps = datasketch_clusters(sub, args.threshold)
        base_s = time.perf_counter() - t0
        base = {
            "time": base_s * args.n / base_n,
            "near": recall(breps, truth["near"], base_n),
            "exact": recall(breps, truth["exact"], base_n),
            "fp": false_positives(sub, breps, args.threshold, args.fp_sample, args.seed),
            "dups": sum(r != i for i, r in enumerate(breps)),
        }

    scaled = base is not None and base_n < args.n
    base_label = f"datasketch ({base_n} docs{', time scaled' if scaled else ''})"
    rows: list[tuple[str, float, float | None, str]] = [
        (f"wall time for {args.n} docs (s)", ours["time"], base and base["time"], ".1f"),
        ("docs / s", args.n / ours["time"], base and args.n / base["time"], ",.0f"),
        ("near-dup recall", ours["near"][0], base and base["near"][0], ".4f"),
        ("exact-dup recall", ours["exact"][0], base and base["exact"][0], ".4f"),
        ("false-positive pairs (sampled)", ours["fp"][0], base and base["fp"][0], ".0f"),
        ("docs marked duplicate", ours["dups"], base and base["dups"], ",.0f"),
    ]
    print(f"\n{'figure':34} {'luodi':>14} {base_label:>34} {'ratio':>8}")
    for name, a, b, fmt in rows:
        bs = "-" if b is None else format(b, fmt)
        ratio = "-" if not b or not a else f"{a / b:.3f}"
        print(f"{name:34} {format(a, fmt):>14} {bs:>34} {ratio:>8}")
    print(
        f"\nluodi: {args.workers} workers, threshold {args.threshold}, {NUM_PERM} permutations, "
        f"char {NGRAM}-grams; near pairs checked {ours['near'][1]}, FP sample "
        f"{ours['fp'][1]} pairs; peak RSS {rss_mb:.0f} MB (corpus included)"
    )
    if base is not None:
        print(
            f"baseline: near pairs checked {base['near'][1]}, FP sample {base['fp'][1]} pairs; "
            f"speedup {base['time'] / ours['time']:.1f}x"
        )
    ok = ours["time"] < 40 and ours["near"][0] >= 0.999
    print(f"target (<40 s, near recall >= 0.999 at 100k docs): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
