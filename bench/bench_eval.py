"""Eval benchmark: `choice` scoring throughput against a bare batched forward pass.

Run (from the repository root):

    .venv/bin/python bench/bench_eval.py                     # tiny "1m" model, 2000 items
    .venv/bin/python bench/bench_eval.py --preset 15m --items 1000 --batch 16

A freshly built tiny Llama (untrained: throughput does not depend on the weights) and a
tokenizer trained on the items score N synthetic four-option questions (mixed Chinese and
English). Figures, in items/s (best of `--repeats`):

- `choice task`: `ChoiceTask.run` over the in-memory records with a LocalCausalTarget: prompt
  building (chat template), tokenization, batching, the forward passes and picking the best
  option; i.e. everything but reading Parquet and writing the run. The task hands the target
  128 items per call (its default), the target runs forward batches of `--batch`.
- `run_eval`: the whole run through the store: reading the dataset, the task, and registering
  the eval_run artifact (results.json with every item).
- baseline `forward, 1 seq/item`: `model(input_ids, attention_mask)` under inference_mode over
  each item's prompt + answer letter, pre-tokenized, length-sorted and left-padded into batches
  of the same size, nothing else. The ratio to it is the target (>= 0.8).
- baseline `forward, 4 seq/item`: the same over context + option for every option: what
  scoring each option as its own sequence costs (luodi scores a one-token answer's options from
  one pass over the shared context).

Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from luodi.config import Settings
from luodi.data.datasets import save_dataset
from luodi.data.records import Record, get_kind, make_record
from luodi.data.report import DatasetReport
from luodi.eval import parse_suite, run_eval
from luodi.eval.targets import LocalCausalTarget
from luodi.eval.tasks.base import TaskEnv
from luodi.eval.tasks.choice import ChoiceTask
from luodi.models.tiny import build_tiny, count_parameters, train_tokenizer
from luodi.progress import no_progress
from luodi.store import Store

WORDS = (
    "invoice approval travel claim leave request contract budget audit policy machine spindle "
    "alarm reset warranty hotline manual safety training quality"
).split()
HANZI = "报销审批合同预算年假差旅发票流程制度培训主轴转速保修热线手册安全质量"


def make_items(n: int, seed: int) -> list[Record]:
    """N labeled choice records with options A–D in meta and a subject."""
    rng = random.Random(seed)
    kind = get_kind("labeled")

    def phrase(k: int) -> str:
        if rng.random() < 0.5:
            return "".join(rng.choice(HANZI) for _ in range(k * 2))
        return " ".join(rng.choice(WORDS) for _ in range(k))

    out = []
    for i in range(n):
        meta = {c: phrase(rng.randint(1, 4)) for c in "ABCD"}
        meta["subject"] = rng.choice(["finance", "hr", "maintenance"])
        out.append(
            make_record(
                kind,
                source="/bench.csv",
                source_sha256="0" * 64,
                location=f"row {i + 2}",
                ordinal=0,
                meta=meta,
                text=phrase(rng.randint(4, 14)) + "？",
                label=rng.choice("ABCD"),
            )
        )
    return out


def bare_forward(model: Any, seqs: list[list[int]], batch: int, pad: int) -> float:
    """Seconds for length-sorted, left-padded batched forward passes over `seqs`."""
    order = sorted(seqs, key=len, reverse=True)
    batches = []
    for s in range(0, len(order), batch):
        rows = order[s : s + batch]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, width - len(r) :] = torch.tensor(r)
            mask[i, width - len(r) :] = 1
        batches.append((ids, mask))
    t = time.perf_counter()
    with torch.inference_mode():
        for ids, mask in batches:
            model(input_ids=ids, attention_mask=mask)
    return time.perf_counter() - t


def main() -> None:
    """Build the model and items, time each figure, print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="1m", help="tiny preset (test, 1m, 5m, 15m, 30m)")
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--batch", type=int, default=16, help="items per batch (both sides)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    records = make_items(args.items, args.seed)
    texts = [r["text"] for r in records] + [r["meta"] for r in records]
    tokenizer = train_tokenizer(texts, vocab_size=2000)
    model = build_tiny(args.preset, tokenizer, seed=args.seed).eval()
    target = LocalCausalTarget(model, tokenizer, ref=f"tiny:{args.preset}", batch_size=args.batch)
    task = ChoiceTask(task="choice", dataset="bench")  # 128 items per call to the target
    env = TaskEnv(seed=0, load=lambda ref, split: [], splits=lambda ref: [])

    # The exact sequences the baselines run: rendered prompt (+ answer) per item.
    rows = [task._row(r, None) for r in records]  # noqa: SLF001
    contexts = [task._context(row, []) for row in rows if row is not None]  # noqa: SLF001
    rendered = target._texts(contexts)  # noqa: SLF001
    one = [tokenizer(t + "A", add_special_tokens=False).input_ids for t in rendered]
    four = [tokenizer(t + c, add_special_tokens=False).input_ids for t in rendered for c in "ABCD"]
    pad = tokenizer.pad_token_id

    store = Store(Settings(home=Path(tempfile.mkdtemp(prefix="luodi-bench-eval-"))))
    report = DatasetReport(name="bench", stage="ingest", record_kind="labeled")
    save_dataset(store, report, [records])
    suite = parse_suite(
        {
            "name": "bench",
            "tasks": [{"task": "choice", "dataset": "bench"}],
        }
    )

    best: dict[str, float] = {}
    accuracy = None
    for _ in range(args.repeats):
        t = time.perf_counter()
        res = task.run(target, records, no_progress, env)
        best["choice task"] = min(best.get("choice task", 1e9), time.perf_counter() - t)
        accuracy = res.metrics["accuracy"]
        t = time.perf_counter()
        run_eval(store, target, suite)
        best["run_eval"] = min(best.get("run_eval", 1e9), time.perf_counter() - t)
        for name, seqs in (("forward, 1 seq/item", one), ("forward, 4 seq/item", four)):
            best[name] = min(best.get(name, 1e9), bare_forward(model, seqs, args.batch, pad))

    tokens = sum(len(s) for s in one)
    print(
        f"tiny:{args.preset} ({count_parameters(model):,} parameters), {args.items} items, "
        f"batch {args.batch}, {tokens / args.items:.1f} tokens/item, threads "
        f"{torch.get_num_threads()}, accuracy {accuracy:.3f} (untrained: chance)"
    )
    base = args.items / best["forward, 1 seq/item"]
    print(f"{'figure':>22} | {'seconds':>8} | {'items/s':>9} | {'x 1-seq forward':>15}")
    for name, sec in best.items():
        rate = args.items / sec
        print(f"{name:>22} | {sec:8.3f} | {rate:9.1f} | {rate / base:15.2f}")
    store.close()


if __name__ == "__main__":
    sys.exit(main())
