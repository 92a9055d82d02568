"""Training benchmark: luodi's sft runner against a bare PyTorch loop, and the matmul peak.

Run (from the repository root):

    .venv/bin/python bench/bench_train.py                  # tiny "5m" model, fp32 and bf16
    .venv/bin/python bench/bench_train.py --steps 40 --preset 15m
    .venv/bin/python bench/bench_train.py --smollm2        # adds LoRA on SmolLM2-135M, bf16

Both sides train the same freshly built tiny Llama (same weights, tokenizer, examples, batch
order, padding collator), with AdamW, constant learning rate, gradient clipping at 1.0, and
bf16 as `torch.autocast("cpu", torch.bfloat16)` (what the Trainer does with bf16=True on a CPU).
luodi's side is `run_train` (validation, HF Trainer, callbacks, per-step metrics to the store,
atomic registration); its tokens/s is measured the same way as the loop's: non-padding input
tokens over the wall time of the training steps (the luodi run's own figure, which excludes
loading and registration). Achieved GFLOP/s = 6 × parameters × tokens/s, against the machine's
fp32 and bf16 matmul peak measured here (square matmuls, best of several). `--smollm2` trains a
LoRA (r=16, all linear layers) on the sample FAQ for a few steps and reports tokens/s and the
process's peak RSS. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import copy
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from luodi.config import Settings
from luodi.data.datasets import save_dataset
from luodi.data.records import get_kind, make_record
from luodi.data.report import DatasetReport
from luodi.models.tiny import build_tiny, count_parameters, train_tokenizer
from luodi.store import Store
from luodi.train import TrainConfig, run_train
from luodi.train.data import PadCollator
from luodi.train.sft import SftStage

WORDS = "invoice approval travel claim leave request contract budget audit policy".split()
HANZI = "报销审批合同预算年假差旅发票流程制度培训"


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    """Best GFLOP/s of an n×n matmul in `dtype` on this machine."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def qa_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Synthetic questions and long answers in English and Chinese."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        q = " ".join(rng.choices(WORDS, k=12)) + "?"
        a = " ".join(rng.choices(WORDS, k=60)) + " " + "".join(rng.choices(HANZI, k=60))
        out.append((q, a))
    return out


def make_dataset(store: Store, pairs: list[tuple[str, str]]) -> str:
    kind = get_kind("qa")
    recs = [
        make_record(
            kind,
            source="/bench.csv",
            source_sha256="0" * 64,
            location=f"row {i}",
            ordinal=0,
            messages=[{"role": "user", "content": q}, {"role": "assistant", "content": a}],
        )
        for i, (q, a) in enumerate(pairs)
    ]
    report = DatasetReport(name="bench", stage="ingest", record_kind="qa")
    return save_dataset(store, report, [recs]).dataset


def bare_loop(
    model: torch.nn.Module,
    examples: list[dict[str, list[int]]],
    pad_id: int,
    *,
    steps: int,
    batch: int,
    lr: float,
    bf16: bool,
    seed: int,
) -> float:
    """Tokens/s of a plain AdamW loop over shuffled padded batches (same work as the runner)."""
    collate = PadCollator(pad_id)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    model.train()
    tokens = 0
    t = time.perf_counter()
    step = 0
    while step < steps:
        order = torch.randperm(len(examples), generator=g).tolist()
        for i in range(0, len(order) - batch + 1, batch):
            b = collate([examples[j] for j in order[i : i + batch]])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(**b).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            tokens += int(b["attention_mask"].sum())
            step += 1
            if step == steps:
                break
    return tokens / (time.perf_counter() - t)


def bench_tiny(args: argparse.Namespace, peaks: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Settings(home=Path(tmp) / "home"))
        pairs = qa_pairs(args.batch * 8)
        ds = make_dataset(store, pairs)
        for compute in ("fp32", "bf16"):
            cfg = TrainConfig(
                stage="sft",
                base=f"tiny:{args.preset}",
                dataset=ds,
                method="full",
                val_ratio=0.0,
                max_steps=args.steps,
                batch_size=args.batch,
                cutoff_len=args.seq,
                learning_rate=1e-3,
                scheduler="constant",
                compute=compute,
                save_steps=10_000,
                tiny_vocab_size=2000,
                name=f"bench-{compute}",
                seed=0,
            )
            # The same model, tokenizer and examples for the bare loop.
            texts = [t for q, a in pairs for t in (q, a)]
            tok = train_tokenizer(texts, 2000)
            model = build_tiny(args.preset, tok, seed=0)
            params = count_parameters(model)
            examples = SftStage().build_dataset(
                [{"id": str(i), "messages": _msgs(q, a)} for i, (q, a) in enumerate(pairs)],
                tok,
                cfg,
            )
            bare = bare_loop(
                copy.deepcopy(model),
                examples,
                tok.pad_token_id,
                steps=args.steps,
                batch=args.batch,
                lr=1e-3,
                bf16=compute == "bf16",
                seed=0,
            )
            res = run_train(store, cfg)
            ours = res.tokens_per_s or 0.0
            peak = peaks[compute]
            rows.append(
                {
                    "compute": compute,
                    "params": params,
                    "luodi tok/s": ours,
                    "bare tok/s": bare,
                    "ratio": ours / bare,
                    "luodi GFLOP/s": 6 * params * ours / 1e9,
                    "bare GFLOP/s": 6 * params * bare / 1e9,
                    "peak GFLOP/s": peak,
                    "luodi % of peak": 100 * 6 * params * ours / 1e9 / peak,
                }
            )
        store.close()
    return rows


def _msgs(q: str, a: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]


def bench_smollm2(args: argparse.Namespace) -> dict[str, Any]:
    """LoRA on SmolLM2-135M-Instruct (bf16) on the sample FAQ: tokens/s and peak RSS."""
    faq = [
        ("年假有多少天？", "入职满一年后每年十五天年假，满十年后二十天。"),
        ("报销需要什么材料？", "发票原件、审批单和行程单，三十天内提交。"),
        ("How do I reset my password?", "Open Settings, choose Security, then Reset password."),
        ("Who approves travel?", "Your department manager approves travel before booking."),
    ] * 3
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Settings(home=Path(tmp) / "home"))
        ds = make_dataset(store, faq)
        cfg = TrainConfig(
            stage="sft",
            base="default",
            dataset=ds,
            method="lora",
            lora_r=16,
            lora_alpha=32,
            val_ratio=0.0,
            max_steps=args.smollm2_steps,
            batch_size=len(faq),
            cutoff_len=256,
            learning_rate=2e-3,
            compute="bf16",
            save_steps=10_000,
            name="smollm2-faq",
        )
        t = time.perf_counter()
        res = run_train(store, cfg)
        wall = time.perf_counter() - t
        store.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "steps": res.steps,
        "tok/s": res.tokens_per_s,
        "loss": res.train_loss,
        "wall s (incl. load)": wall,
        "peak RSS MB": rss,
        "trainable": res.trainable_parameters,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="5m")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--smollm2", action="store_true", help="also LoRA on SmolLM2-135M, bf16")
    p.add_argument("--smollm2-steps", type=int, default=5)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"threads {torch.get_num_threads()}  matmul peak GFLOP/s: ", end="")
    print(f"fp32 {peaks['fp32']:.1f}  bf16 {peaks['bf16']:.1f}")
    rows = bench_tiny(args, peaks)
    cols = list(rows[0])
    print(" | ".join(f"{c:>15}" for c in cols))
    for r in rows:
        print(
            " | ".join(f"{v:>15.3g}" if isinstance(v, float) else f"{v!s:>15}" for v in r.values())
        )
    if args.smollm2:
        sm = bench_smollm2(args)
        print(
            "SmolLM2-135M LoRA bf16:",
            ", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in sm.items()
            ),
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
