"""Cleaning benchmark: MB/s of text through luodi's clean recipe against the raw passes alone.

Run (from the repository root; the corpus is generated once and reused):

    .venv/bin/python bench/bench_clean.py --mb 200
    .venv/bin/python bench/bench_clean.py --mb 1000 --figures clean,clean_parquet

It writes a mixed Chinese/English corpus with `bench/corpus.py` (5% exact and 5% near
duplicates planted by default) to `bench/out/clean-<MB>mb-s<seed>.jsonl` (gitignored), then
measures each figure in its own subprocess, so every figure's peak RSS
(`resource.getrusage(...).ru_maxrss`) is its own:

- `read`: the JSONL streamed into text records in batches, no operator (luodi: `make_record`;
  baseline: `json.loads` alone). Every other figure includes this reading.
- `mask_pii`: the PII masker as a plain function over the texts (what the gateway calls), no
  records, no pipeline; baseline as for `pii_mask`.
- `pii_mask`: `run_ops` with `pii_mask` (allow-listing the hotline), sink discarding records;
  baseline: the bare regex passes, `re.sub(pattern, "[PII]", text)` with luodi's own compiled
  numeric pattern plus an e-mail regex when the text has an '@': no validation, no callback,
  no records (so the ratio is the price of validation, allow list and the operator framework).
- `exact_dedup`: `run_ops` with `exact_dedup`; baseline: a set of BLAKE2b digests of the
  lowercased, whitespace-collapsed texts.
- `clean`: `run_ops` with normalize_unicode, strip_html, normalize_whitespace, pii_mask,
  exact_dedup, sink discarding records; baseline: `unicodedata.normalize("NFKC")`, a tag
  `re.sub`, a whitespace `re.sub`, the PII regex and the digest set in a bare loop.
- `clean_parquet`: the same with the sink writing Parquet through `DatasetWriter`; baseline adds
  a pyarrow `ParquetWriter` (zstd) of the surviving texts.

MB/s counts the UTF-8 bytes of the input `text` fields. Records stream in batches (`--batch`),
the corpus is never loaded whole; the local engine spools the input of the global
`exact_dedup` to a temporary file, as it does in real runs. "RSS before" is the process after
imports and setup, "peak" its maximum during the run. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from corpus import iter_docs, write_jsonl  # noqa: E402

OUT = HERE / "out"
HOTLINE = "400-820-8820"
FIGURES = ("read", "mask_pii", "pii_mask", "exact_dedup", "clean", "clean_parquet")
RECIPES: dict[str, list[dict[str, Any]]] = {
    "read": [],
    "mask_pii": [],
    "pii_mask": [{"op": "pii_mask", "allow": [HOTLINE]}],
    "exact_dedup": [{"op": "exact_dedup"}],
    "clean": [
        {"op": "normalize_unicode"},
        {"op": "strip_html"},
        {"op": "normalize_whitespace"},
        {"op": "pii_mask", "allow": [HOTLINE]},
        {"op": "exact_dedup"},
    ],
}
RECIPES["clean_parquet"] = RECIPES["clean"]

TAG = re.compile(r"<[^>]+>")
WS = re.compile(r"\s+")
EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")


def plain_pii(text: str, numeric: re.Pattern[str]) -> str:
    """The bare PII passes: luodi's own numeric regex and an e-mail regex, no validation."""
    if "@" in text:
        text = EMAIL.sub("[PII]", text)
    return numeric.sub("[PII]", text)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- corpus --------------------------------------------------------------------------------


def ensure_corpus(mb: float, seed: int, exact_dup: float, near_dup: float) -> Path:
    """The JSONL corpus of about `mb` MB of text (generated once); its meta sits beside it."""
    path = OUT / f"clean-{mb:g}mb-s{seed}-e{exact_dup:g}-n{near_dup:g}.jsonl"
    meta = path.with_suffix(".meta.json")
    if path.exists() and meta.exists():
        return path
    sample = list(iter_docs(300, seed=seed + 10_000))
    per_doc = sum(len(d.encode("utf-8")) for d in sample) / len(sample)
    n = math.ceil(mb * 1e6 / per_doc)
    print(f"generating {n:,} documents (~{mb:g} MB of text) into {path} ...", flush=True)
    t0 = time.perf_counter()
    docs = iter_docs(n, exact_dup=exact_dup, near_dup=near_dup, seed=seed)
    text_bytes = write_jsonl(path, docs)
    info = {
        "docs": n,
        "text_bytes": text_bytes,
        "file_bytes": path.stat().st_size,
        "exact_dup": exact_dup,
        "near_dup": near_dup,
        "seed": seed,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    meta.write_text(json.dumps(info, indent=2))
    return path


def read_texts(path: Path, batch: int) -> Iterator[list[str]]:
    """The corpus texts in batches (baseline reading)."""
    out: list[str] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            out.append(json.loads(line)["text"])
            if len(out) == batch:
                yield out
                out = []
    if out:
        yield out


def read_records(path: Path, batch: int) -> Iterator[list[dict[str, Any]]]:
    """The corpus as luodi text records in batches (what a loader hands the pipeline)."""
    from luodi.data.records import get_kind, make_record

    kind = get_kind("text")
    src, sha = str(path), "0" * 64  # hashing a GB only to fill provenance would skew `read`
    ordinal = 0
    for texts in read_texts(path, batch):
        recs = []
        for t in texts:
            recs.append(
                make_record(
                    kind,
                    source=src,
                    source_sha256=sha,
                    location=f"line {ordinal + 1}",
                    ordinal=ordinal,
                    text=t,
                )
            )
            ordinal += 1
        yield recs


# --- one measurement (runs in a subprocess) ------------------------------------------------


def run_luodi(figure: str, path: Path, batch: int, work: Path) -> dict[str, Any]:
    """Time `figure` through luodi; returns seconds, record counts and RSS."""
    from luodi.data.datasets import DatasetWriter
    from luodi.data.ops import Recipe
    from luodi.data.ops.pii import PiiMasker
    from luodi.data.pipeline import run_ops
    from luodi.data.records import get_kind

    kind = get_kind("text")
    ops = Recipe(operators=RECIPES[figure]).build(kind)
    rss0 = peak_rss_mb()
    writer = DatasetWriter(work, kind) if figure == "clean_parquet" else None
    sink: Callable[[list[dict[str, Any]]], None] = writer.write if writer else (lambda _: None)
    t0 = time.perf_counter()
    if figure == "read":
        n = sum(len(b) for b in read_records(path, batch))
        extra: dict[str, Any] = {"records_in": n, "records_out": n}
    elif figure == "mask_pii":
        masker, n, changed = PiiMasker([HOTLINE]), 0, 0
        for texts in read_texts(path, batch):
            n += len(texts)
            changed += sum(masker.mask(t) is not t for t in texts)
        extra = {
            "records_in": n,
            "records_out": n,
            "ops": {"mask_pii": {"dropped": 0, "modified": changed}},
        }
    else:
        res = run_ops(ops, read_records(path, batch), sink)
        extra = {
            "records_in": res.records_in,
            "records_out": res.records_out,
            "ops": {s.op: {"dropped": s.dropped, "modified": s.modified} for s in res.operators},
        }
    if writer:
        writer.close()
    secs = time.perf_counter() - t0
    return {"seconds": secs, "rss_before_mb": rss0, "rss_peak_mb": peak_rss_mb(), **extra}


def run_baseline(figure: str, path: Path, batch: int, work: Path) -> dict[str, Any]:
    """Time the raw passes of `figure` in a bare loop over the same texts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from luodi.data.ops.pii import ALL_TYPES, _compiled

    numeric = _compiled(frozenset(ALL_TYPES))
    assert numeric is not None
    rss0 = peak_rss_mb()
    seen: set[bytes] = set()
    writer = None
    if figure == "clean_parquet":
        schema = pa.schema([pa.field("text", pa.string())])
        writer = pq.ParquetWriter(work / "base.parquet", schema, compression="zstd")
    n_in = n_out = 0
    t0 = time.perf_counter()
    for texts in read_texts(path, batch):
        n_in += len(texts)
        kept = []
        for t in texts:
            if figure in ("clean", "clean_parquet"):
                t = unicodedata.normalize("NFKC", t)
                t = TAG.sub("", t)
                t = WS.sub(" ", t).strip()
            if figure in ("mask_pii", "pii_mask", "clean", "clean_parquet"):
                t = plain_pii(t, numeric)
            if figure in ("exact_dedup", "clean", "clean_parquet"):
                key = hashlib.blake2b(" ".join(t.lower().split()).encode(), digest_size=16)
                d = key.digest()
                if d in seen:
                    continue
                seen.add(d)
            kept.append(t)
        n_out += len(kept)
        if writer is not None and kept:
            writer.write_table(pa.table({"text": kept}, schema=schema))
    if writer is not None:
        writer.close()
    secs = time.perf_counter() - t0
    return {
        "seconds": secs,
        "rss_before_mb": rss0,
        "rss_peak_mb": peak_rss_mb(),
        "records_in": n_in,
        "records_out": n_out,
    }


def measure(figure: str, side: str, path: Path, batch: int) -> dict[str, Any]:
    """Run one figure on one side in a fresh subprocess; returns its JSON result."""
    cmd = [sys.executable, __file__, "--one", figure, "--side", side, "--corpus", str(path)]
    cmd += ["--batch", str(batch)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{figure}/{side} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- report --------------------------------------------------------------------------------


def report(info: dict[str, Any], rows: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
    """Print the table of figures with rich."""
    from rich.console import Console
    from rich.table import Table

    mb = info["text_bytes"] / 1e6
    console = Console(width=132)
    console.print(
        f"corpus: {info['docs']:,} documents, {mb:,.1f} MB of text "
        f"({info['file_bytes'] / 1e6:,.1f} MB JSONL), exact dups {info['exact_dup']:.0%}, "
        f"near dups {info['near_dup']:.0%}, seed {info['seed']}"
    )
    table = Table(title="luodi data cleaning throughput (MB/s of UTF-8 text)")
    for col in ("figure", "luodi MB/s", "baseline MB/s", "ratio", "luodi RSS before/peak MB"):
        table.add_column(col, justify="left" if col == "figure" else "right")
    table.add_column("baseline RSS before/peak MB", justify="right")
    for name, lu, ba in rows:
        lu_rate, ba_rate = mb / lu["seconds"], mb / ba["seconds"]
        table.add_row(
            name,
            f"{lu_rate:,.1f}",
            f"{ba_rate:,.1f}",
            f"{lu_rate / ba_rate:.2f}",
            f"{lu['rss_before_mb']:,.0f} / {lu['rss_peak_mb']:,.0f}",
            f"{ba['rss_before_mb']:,.0f} / {ba['rss_peak_mb']:,.0f}",
        )
    console.print(table)
    for name, lu, ba in rows:
        ops = lu.get("ops", {})
        detail = ", ".join(f"{op}: -{v['dropped']:,} ~{v['modified']:,}" for op, v in ops.items())
        console.print(
            f"{name}: luodi {lu['records_in']:,} -> {lu['records_out']:,} records"
            f"{' (' + detail + ')' if detail else ''}; baseline -> {ba['records_out']:,}"
        )


def main(argv: list[str] | None = None) -> None:
    """Parse arguments; either orchestrate the whole bench or run one `--one` measurement."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mb", type=float, default=200, help="corpus size in MB of text")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--exact-dup", type=float, default=0.05, help="share of exact duplicates")
    p.add_argument("--near-dup", type=float, default=0.05, help="share of near duplicates")
    p.add_argument("--batch", type=int, default=2048, help="records per batch")
    p.add_argument("--figures", default=",".join(FIGURES), help="comma-separated subset")
    p.add_argument("--one", choices=FIGURES, help=argparse.SUPPRESS)
    p.add_argument("--side", choices=("luodi", "baseline"), help=argparse.SUPPRESS)
    p.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.one:
        work = Path(tempfile.mkdtemp(prefix="bench-clean-", dir=OUT))
        try:
            fn = run_luodi if args.side == "luodi" else run_baseline
            print(json.dumps(fn(args.one, args.corpus, args.batch, work)))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return

    figures = [f for f in args.figures.split(",") if f]
    unknown = set(figures) - set(FIGURES)
    if unknown:
        p.error(f"unknown figures {sorted(unknown)}; known: {', '.join(FIGURES)}")
    OUT.mkdir(parents=True, exist_ok=True)
    path = ensure_corpus(args.mb, args.seed, args.exact_dup, args.near_dup)
    info = json.loads(path.with_suffix(".meta.json").read_text())
    rows = []
    for fig in figures:
        print(f"measuring {fig} ...", flush=True)
        lu = measure(fig, "luodi", path, args.batch)
        ba = measure(fig, "baseline", path, args.batch)
        rows.append((fig, lu, ba))
    report(info, rows)


if __name__ == "__main__":
    main()
