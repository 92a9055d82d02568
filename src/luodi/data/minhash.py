"""Near-duplicate detection: MinHash signatures of character n-grams, LSH banding, clusters.

Character shingles (default 5-grams) of the lowercased, whitespace-collapsed text work for
Chinese and English alike, with no tokenizer. Everything is vectorized with numpy over batches
of documents:

- shingle hashes: the batch's texts become one array of code points (`utf-32-le`), each
  document followed by `ngram` zero separators so a window never mixes two documents; a
  polynomial over `ngram` shifted views (wrapping uint64 arithmetic) gives every window's
  value, finished with murmur3's 64-bit mixer and cut to its high 32 bits. A document shorter
  than `ngram` is one shingle (itself, zero-padded).
- MinHash: `num_perm` multiply-add hashes `h_i(x) = (a_i * x + b_i) mod 2^32` (random odd
  `a_i`, seeded) and `np.minimum.reduceat` over document offsets, in blocks of a few dozen
  documents so the working array stays in L2 cache; this is ~20x faster than a Python loop
  over datasketch.
- LSH: `bands x rows` chosen so a pair at the threshold becomes a candidate with probability
  above 0.999; band keys are hashed to uint64 and grouped by one argsort. Rows with identical
  signatures (exact duplicates) are joined before banding so they do not flood the buckets.
- verification: a candidate pair is accepted on its estimated Jaccard (fraction of equal
  signature values) when that is clearly above the threshold and rejected when clearly below;
  when the texts are at hand, borderline pairs are decided by their exact shingle Jaccard,
  since with 128 permutations the estimate's noise (sd ~0.03) would lose ~1% of pairs at
  J = 0.85. Accepted pairs are joined by union-find; a cluster's representative is its
  smallest index (first in stream order).

Signature blocks of large inputs are computed in worker processes (`workers`), because the
per-call ufunc work is too small for threads to scale under the GIL.
"""

from __future__ import annotations

import math
import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np

from luodi.errors import BadInputError

CHUNK_DOCS = 2048
"""Documents per signature job (one worker task; also the unit of the in-process loop)."""
CACHE_DOCS = 48
"""Documents per MinHash block: ~48 KB of shingles x 4 bytes stays in L2 cache."""
MIN_CANDIDATE_PROB = 0.999
"""A pair at exactly the threshold must become an LSH candidate at least this often."""
PAIR_WINDOW = 32
"""In a band bucket, each member is paired with at most this many preceding members."""
VERIFY_CHUNK = 1 << 16
VERIFY_SIGMAS = 4.0
"""With texts at hand, estimates this many standard deviations from the threshold are trusted."""

_POLY = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xFF51AFD7ED558CCD)
_MIX2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_S32 = np.uint64(32)


def _check(threshold: float, ngram: int, num_perm: int) -> None:
    if not 0.0 < threshold <= 1.0:
        raise BadInputError(f"threshold must be in (0, 1], got {threshold}")
    if ngram < 1:
        raise BadInputError(f"ngram must be at least 1, got {ngram}")
    if num_perm < 2:
        raise BadInputError(f"num_perm must be at least 2, got {num_perm}")


def normalize(text: str) -> str:
    """The text MinHash sees: lowercased, whitespace runs collapsed to one space, stripped."""
    return " ".join(text.lower().split())


def _fmix64(x: np.ndarray) -> np.ndarray:
    """murmur3's 64-bit finalizer, in place on a uint64 array (every bit affects every bit)."""
    x ^= x >> _S33
    x *= _MIX1
    x ^= x >> _S33
    x *= _MIX2
    x ^= x >> _S33
    return x


def shingle_hashes(texts: Sequence[str], ngram: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of every character `ngram` of each normalized text, concatenated.

    Returns `(hashes, offsets)`: document `d`'s shingles are `hashes[offsets[d]:offsets[d+1]]`
    (`offsets` has `len(texts) + 1` entries). Every document has at least one shingle: one
    shorter than `ngram` (even empty) is hashed whole. Repeated shingles are kept; they do not
    change a minimum.
    """
    return _hash_normalized([normalize(t) for t in texts], ngram)


def _hash_normalized(norm: Sequence[str], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    lens = np.fromiter((len(t) for t in norm), dtype=np.int64, count=len(norm))
    sep = "\0" * ngram
    cps = np.frombuffer((sep.join(norm) + sep * 2).encode("utf-32-le"), dtype=np.uint32)
    cps = cps.astype(np.uint64)
    width = len(cps) - ngram
    # Wrapping polynomial over shifted views: value(p) = sum_k cps[p+k] * P^(ngram-1-k).
    h = cps[:width].copy()
    for k in range(1, ngram):
        h *= _POLY
        h += cps[k : k + width]
    starts = np.zeros(len(norm), dtype=np.int64)
    if len(norm) > 1:
        starts[1:] = np.cumsum(lens[:-1] + ngram)
    counts = np.maximum(lens - ngram + 1, 1)
    offsets = np.zeros(len(norm) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    pos = np.arange(offsets[-1], dtype=np.int64)
    pos += np.repeat(starts - offsets[:-1], counts)
    sel = h[pos]
    # Length enters the whole-document shingle so "ab" and "ab\0" never collide.
    short = counts == 1
    sel[offsets[:-1][short]] ^= lens[short].astype(np.uint64)
    return (_fmix64(sel) >> _S32).astype(np.uint32), offsets


def permutations(num_perm: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The seeded hash family: odd multipliers `a` and offsets `b`, uint32 arrays of num_perm."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 1 << 32, size=num_perm, dtype=np.uint64).astype(np.uint32) | np.uint32(1)
    b = rng.integers(0, 1 << 32, size=num_perm, dtype=np.uint64).astype(np.uint32)
    return a, b


def _minhash(hashes: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Signatures `[num_perm, docs]` of the documents whose shingles `hashes` holds."""
    sig = np.empty((len(a), len(offsets) - 1), dtype=np.uint32)
    t = np.empty(len(hashes), dtype=np.uint32)
    idx = offsets[:-1]
    for i in range(len(a)):
        np.multiply(hashes, a[i], out=t)
        t += b[i]
        np.minimum.reduceat(t, idx, out=sig[i])
    return sig


def _signature_chunk(texts: Sequence[str], ngram: int, num_perm: int, seed: int) -> np.ndarray:
    a, b = permutations(num_perm, seed)
    norm = [normalize(t) for t in texts]
    sig = np.empty((len(texts), num_perm), dtype=np.uint32)
    # Hashing and MinHash go block by block so every array stays in L2 cache: fresh
    # multi-megabyte arrays cost more in page faults than the arithmetic itself.
    for d0 in range(0, len(norm), CACHE_DOCS):
        hashes, offsets = _hash_normalized(norm[d0 : d0 + CACHE_DOCS], ngram)
        sig[d0 : d0 + CACHE_DOCS] = _minhash(hashes, offsets, a, b).T
    return sig


def _chunks(text_batches: Iterable[Sequence[str]]) -> Iterator[list[str]]:
    buf: list[str] = []
    for batch in text_batches:
        for t in batch:
            buf.append(t)
            if len(buf) == CHUNK_DOCS:
                yield buf
                buf = []
    if buf:
        yield buf


def signature_batches(
    text_batches: Iterable[Sequence[str]],
    *,
    ngram: int = 5,
    num_perm: int = 128,
    seed: int = 0,
    workers: int = 2,
) -> Iterator[np.ndarray]:
    """MinHash signatures of a stream of texts, as uint32 blocks `[docs, num_perm]` in order.

    Consumes `text_batches` lazily (only a few chunks of texts are held at once) and re-chunks
    them into blocks of up to `CHUNK_DOCS`; concatenated, the blocks are one row per text. With
    `workers > 1` and more than one block, blocks are computed in that many processes
    (forkserver start method: as with any multiprocessing, a script that calls this must
    guard its entry point with `if __name__ == "__main__":`).
    """
    _check(0.5, ngram, num_perm)
    chunks = _chunks(text_batches)
    first = next(chunks, None)
    if first is None:
        return
    second = next(chunks, None)
    if second is None or workers <= 1:
        yield _signature_chunk(first, ngram, num_perm, seed)
        if second is not None:
            yield _signature_chunk(second, ngram, num_perm, seed)
            for c in chunks:
                yield _signature_chunk(c, ngram, num_perm, seed)
        return
    # forkserver: safe even when the parent holds threads (Ray, torch), and starts fast.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["luodi.data.minhash"])
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        pending: deque[Future[np.ndarray]] = deque()
        for c in _prepend([first, second], chunks):
            pending.append(pool.submit(_signature_chunk, c, ngram, num_perm, seed))
            # Bounded look-ahead keeps memory flat on streams of any length.
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _prepend(head: list[list[str]], rest: Iterator[list[str]]) -> Iterator[list[str]]:
    yield from head
    yield from rest


def signatures(
    texts: Sequence[str],
    *,
    ngram: int = 5,
    num_perm: int = 128,
    seed: int = 0,
    workers: int = 2,
) -> np.ndarray:
    """MinHash signatures of `texts`: a uint32 array `[len(texts), num_perm]`.

    Deterministic for a given `seed`, `ngram` and `num_perm` whatever `workers` is. Two rows
    agree in each column with probability equal to the Jaccard similarity of the texts'
    character-`ngram` sets.
    """
    blocks = list(
        signature_batches([texts], ngram=ngram, num_perm=num_perm, seed=seed, workers=workers)
    )
    if not blocks:
        return np.empty((0, num_perm), dtype=np.uint32)
    return np.concatenate(blocks)


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float | np.ndarray:
    """Estimated Jaccard similarity: the fraction of equal values along the last axis.

    Two 1-D signatures give a float; stacked signatures `[..., num_perm]` give an array.
    """
    a, b = np.asarray(sig_a), np.asarray(sig_b)
    if a.shape[-1] != b.shape[-1]:
        raise BadInputError(f"signatures differ in length: {a.shape[-1]} vs {b.shape[-1]}")
    est = np.mean(a == b, axis=-1)
    return float(est) if np.ndim(est) == 0 else est


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """`(bands, rows)` for banding: the most selective split of `num_perm` rows.

    Picks the largest `rows` (fewest false candidates) for which a pair with Jaccard equal to
    `threshold` still collides in some band with probability >= MIN_CANDIDATE_PROB, using
    `bands = num_perm // rows`.
    """
    _check(threshold, 1, num_perm)
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        p = 1.0 - (1.0 - threshold**rows) ** bands
        if p >= MIN_CANDIDATE_PROB:
            best = (bands, rows)
    return best


def _band_keys(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """uint64 keys `[bands, docs]`: a hash of each band's `rows` values and its band number."""
    n = len(sigs)
    keys = np.empty((bands, n), dtype=np.uint64)
    for j in range(bands):
        k = np.full(n, j + 1, dtype=np.uint64)
        for c in range(j * rows, (j + 1) * rows):
            k *= _POLY
            k += sigs[:, c]
        keys[j] = _fmix64(k)
    return keys


def _bucket_pairs(keys: np.ndarray, n: int, window: int) -> np.ndarray:
    """Pairs `(lo, hi)` of documents sharing a key; `keys` is `[groups * n]`, doc = pos % n.

    Each bucket member is paired with up to `window` members before it (stream order inside
    a band, thanks to the stable sort). Pairs may repeat across bands.
    """
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    new = np.empty(len(sk), dtype=bool)
    new[0] = True
    np.not_equal(sk[1:], sk[:-1], out=new[1:])
    pos = np.arange(len(sk))
    rank = pos - np.maximum.accumulate(np.where(new, pos, 0))
    counts = np.minimum(rank, window)
    total = int(counts.sum())
    if total == 0:
        return np.empty((0, 2), dtype=np.int64)
    right = np.repeat(pos, counts)
    cum = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=cum[1:])
    back = np.arange(total) - np.repeat(cum, counts) + 1
    docs = order % n
    x, y = docs[right - back], docs[right]
    return np.stack([np.minimum(x, y), np.maximum(x, y)], axis=1)


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    """Distinct values, sorted (a plain sort: faster than np.unique's hashing on int64)."""
    x = np.sort(x)
    keep = np.empty(len(x), dtype=bool)
    keep[:1] = True
    np.not_equal(x[1:], x[:-1], out=keep[1:])
    return x[keep]


def candidate_pairs(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """Distinct index pairs `[m, 2]` (`i < j`, sorted) that share at least one LSH band.

    Within a bucket, each member is paired with up to PAIR_WINDOW members before it in
    stream order, so a bucket of thousands of copies costs linear, not quadratic, work and
    still connects them all.
    """
    n = len(sigs)
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    pairs = _bucket_pairs(_band_keys(sigs, bands, rows).ravel(), n, PAIR_WINDOW)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    code = _sorted_unique(pairs[:, 0] * n + pairs[:, 1])
    return np.stack([code // n, code % n], axis=1)


def _shingle_sets(norm: Sequence[str], ngram: int) -> list[np.ndarray]:
    """Each normalized text's distinct shingle hashes, sorted (one sort for the whole block)."""
    hashes, offsets = _hash_normalized(norm, ngram)
    doc = np.repeat(np.arange(len(norm), dtype=np.uint64), np.diff(offsets))
    keys = (doc << _S32) | hashes.astype(np.uint64)
    keys.sort()
    keep = np.empty(len(keys), dtype=bool)
    keep[0] = True
    np.not_equal(keys[1:], keys[:-1], out=keep[1:])
    keys = keys[keep]
    bounds = np.searchsorted(keys >> _S32, np.arange(len(norm) + 1, dtype=np.uint64))
    low = keys.astype(np.uint32)
    return [low[bounds[d] : bounds[d + 1]] for d in range(len(norm))]


def _set_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


def exact_jaccard(text_a: str, text_b: str, ngram: int = 5) -> float:
    """Jaccard similarity of the two normalized texts' character-`ngram` sets (hashed).

    Uses the same 32-bit shingle hashes as the signatures, so it is exactly what MinHash
    estimates (a hash collision between distinct shingles is ~1e-4 likely per pair of
    1000-character texts, and shifts the result by 1/1000 at most).
    """
    a, b = _shingle_sets([normalize(text_a), normalize(text_b)], ngram)
    return _set_jaccard(a, b)


def _exact_jaccards(texts: Sequence[str], pairs: np.ndarray, ngram: int) -> np.ndarray:
    """Exact shingle Jaccard of each pair of `texts`, hashing each document once."""
    docs = _sorted_unique(pairs.ravel()).tolist()
    sets: dict[int, np.ndarray] = {}
    for d0 in range(0, len(docs), CACHE_DOCS):
        block = docs[d0 : d0 + CACHE_DOCS]
        found = _shingle_sets([normalize(texts[d]) for d in block], ngram)
        sets.update(zip(block, found, strict=True))
    return np.fromiter(
        (_set_jaccard(sets[i], sets[j]) for i, j in pairs.tolist()), dtype=float, count=len(pairs)
    )


def verify_pairs(
    sigs: np.ndarray,
    pairs: np.ndarray,
    threshold: float,
    *,
    texts: Sequence[str] | None = None,
    ngram: int = 5,
) -> np.ndarray:
    """The candidate pairs `[m, 2]` judged to have Jaccard at least `threshold`.

    Without `texts`, the MinHash estimate decides. With `texts` (indexable like the rows of
    `sigs`), only clear cases are decided by the estimate — more than VERIFY_SIGMAS standard
    deviations from the threshold — and borderline pairs by the exact shingle Jaccard, so a
    pair at J = 0.85 is not lost to the estimate's noise (sd ~0.03 with 128 permutations).
    """
    k = sigs.shape[1]
    eq = np.empty(len(pairs), dtype=np.int64)
    for s in range(0, len(pairs), VERIFY_CHUNK):
        p = pairs[s : s + VERIFY_CHUNK]
        eq[s : s + len(p)] = np.count_nonzero(sigs[p[:, 0]] == sigs[p[:, 1]], axis=1)
    if texts is None:
        # Compare counts, not floats: 0.8 * 128 must accept exactly 103 equal values.
        return pairs[eq >= math.ceil(threshold * k - 1e-9)]
    margin = VERIFY_SIGMAS * math.sqrt(threshold * (1 - threshold) / k)
    est = eq / k
    sure = est >= threshold + margin
    unsure = ~sure & (est >= threshold - margin)
    ok = sure.copy()
    if unsure.any():
        ok[unsure] = _exact_jaccards(texts, pairs[unsure], ngram) >= threshold - 1e-12
    return pairs[ok]


def _components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Each index's component representative (its smallest member), via union-find."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in pairs.tolist():
        ri, rj = find(i), find(j)
        if ri != rj:
            # Keeping the smaller root makes every root its component's minimum.
            if ri < rj:
                parent[rj] = ri
            else:
                parent[ri] = rj
    return np.fromiter((find(x) for x in range(n)), dtype=np.int64, count=n)


def cluster_signatures(
    sigs: np.ndarray,
    *,
    threshold: float = 0.8,
    texts: Sequence[str] | None = None,
    ngram: int = 5,
) -> np.ndarray:
    """Cluster representatives of signature rows: an index array with `rep[i] <= i`.

    Rows with identical signatures are linked first and only one of each runs through LSH
    (exact duplicates would otherwise fill every band's buckets). Other rows are linked when
    they share an LSH band and pass `verify_pairs` (exactly, for borderline pairs, when
    `texts` is given). Clusters are the connected components, represented by their smallest
    index.
    """
    n, k = sigs.shape
    _check(threshold, ngram, k)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    same = _bucket_pairs(_band_keys(sigs, 1, k)[0], n, 1)
    # A 64-bit key collision between different signatures must not link them.
    same = same[np.all(sigs[same[:, 0]] == sigs[same[:, 1]], axis=1)]
    first = np.ones(n, dtype=bool)
    first[same[:, 1]] = False
    uniq = np.flatnonzero(first)
    bands, rows = lsh_params(threshold, k)
    cand = uniq[candidate_pairs(sigs[uniq], bands, rows)]
    linked = verify_pairs(sigs, cand, threshold, texts=texts, ngram=ngram)
    return _components(n, np.concatenate([same, linked]))


def cluster_near_duplicates(
    texts: Sequence[str],
    *,
    threshold: float = 0.8,
    ngram: int = 5,
    num_perm: int = 128,
    seed: int = 0,
    workers: int = 2,
) -> list[int]:
    """For each text, the index of its near-duplicate cluster's representative.

    Texts whose character-`ngram` Jaccard similarity is at least `threshold` are linked,
    transitively. Candidates come from MinHash LSH (`num_perm` permutations); a candidate pair
    is accepted on its MinHash estimate when that is clearly above the threshold, else on the
    exact shingle Jaccard. The representative of a cluster is its first (smallest) index, so a
    unique text maps to itself.
    """
    _check(threshold, ngram, num_perm)
    sigs = signatures(texts, ngram=ngram, num_perm=num_perm, seed=seed, workers=workers)
    return cluster_signatures(sigs, threshold=threshold, texts=texts, ngram=ngram).tolist()
