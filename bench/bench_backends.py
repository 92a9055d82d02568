"""Serving backend benchmark: luodi's engines against the libraries they wrap, in one run.

Run (from the repository root):

    .venv/bin/python bench/bench_backends.py                    # all figures
    .venv/bin/python bench/bench_backends.py --figures llama --tokens 256
    .venv/bin/python bench/bench_backends.py --figures transformers --smollm2

Figures (best of `--repeats`; nothing here asserts a time):

- `llama`: decode tokens/s of the llama_cpp backend (`generate` through the fair queue and the
  worker thread, streaming internally) against `llama_cpp.Llama.create_completion` called
  in-process on the same GGUF (the default SmolLM2-135M-Instruct), same prompt, same number
  of tokens (greedy, a counting prompt that does not stop early), each on its own `Llama` with
  the same settings. The ratio is the backend's cost over the bare library (target >= 0.95).
- `transformers`: tokens/s of the transformers backend on an untrained tiny "5m" Llama (its
  greedy replies run to max_tokens): 8 requests one after another (batch 1) against a bare
  `model.generate` per prompt, and the same 8 sent as a burst (queued while the worker is
  held, as requests arriving during a running batch are; they run as one batch of 8) against
  a bare `model.generate` over the 8 left-padded prompts in one call. With `--smollm2` the
  same on SmolLM2-135M-Instruct loaded from its GGUF through transformers (~15 s to load).
- `upstream`: the openai engine's added latency: p50/p95 of `UpstreamBackend.generate`
  against a bare `httpx.AsyncClient.post` of the same request to the same fake upstream
  (FastAPI + uvicorn on 127.0.0.1, answering at once); the difference is what the engine
  adds (parsing, mapping, its own pool).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from luodi.serve.backends import GenRequest

COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"


def best(repeats: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(repeats))


def run_async(fn: Callable[[], Awaitable[Any]]) -> float:
    """Seconds one awaited call takes, measured inside its own event loop."""

    async def timed() -> float:
        start = time.perf_counter()
        await fn()
        return time.perf_counter() - start

    return asyncio.run(timed())


def bench_llama(tokens: int, repeats: int) -> list[tuple[str, float, float]]:
    import llama_cpp

    from luodi.config import Settings
    from luodi.models.base import default_base
    from luodi.serve.backends.llama_cpp import LlamaCppBackend
    from luodi.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Settings(home=Path(tmp) / "home"))
        info = default_base(store)
        store.close()
    gguf = Path(info.meta["path"]) / info.meta["gguf_file"]
    backend = LlamaCppBackend(gguf, ref=info.ref)
    direct = llama_cpp.Llama(
        model_path=str(gguf), n_ctx=2048, n_threads=os.cpu_count(), verbose=False, seed=0
    )
    req = GenRequest(messages=None, prompt=COUNTING, temperature=0, max_tokens=tokens)
    same = {"temperature": 0, "top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}

    def lib() -> float:
        start = time.perf_counter()
        out = direct.create_completion(COUNTING, max_tokens=tokens, **same)
        assert out["usage"]["completion_tokens"] == tokens, "the prompt stopped early"
        return time.perf_counter() - start

    def ours() -> float:
        async def one() -> None:
            r = await backend.generate(req)
            assert r.completion_tokens == tokens, "the prompt stopped early"

        return run_async(one)

    lib(), ours()  # warm up both (first evaluation, caches)
    base_times, our_times = [], []
    for _ in range(repeats):  # interleaved, so a busy moment hits both alike
        base_times.append(lib())
        our_times.append(ours())
    base, mine = min(base_times), min(our_times)
    asyncio.run(backend.aclose())
    direct.close()
    return [
        ("llama_cpp.Llama (baseline)", tokens / base, 1.0),
        ("llama_cpp backend", tokens / mine, base / mine),
    ]


def _tiny(preset: str) -> tuple[Any, Any]:
    from luodi.models.tiny import build_tiny, train_tokenizer

    texts = [f"{COUNTING} 报销审批合同预算年假差旅发票 invoice approval {i}" for i in range(200)]
    tok = train_tokenizer(texts, 2000)
    return build_tiny(preset, tok, seed=0), tok


def _smollm2() -> tuple[Any, Any]:
    from luodi.config import Settings
    from luodi.models.base import default_base
    from luodi.models.loading import load_base
    from luodi.progress import quiet_hf_bars
    from luodi.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Settings(home=Path(tmp) / "home"))
        info = default_base(store)
        store.close()
    with quiet_hf_bars():
        return load_base(info)


def bench_transformers(
    name: str, model: Any, tok: Any, tokens: int, repeats: int
) -> list[tuple[str, float, float]]:
    import torch

    from luodi.models.chat import stop_token_ids
    from luodi.serve.backends.transformers import TransformersBackend

    prompts = [f"{COUNTING} {i}" for i in range(8)]
    reqs = [GenRequest(messages=None, prompt=p, temperature=0, max_tokens=tokens) for p in prompts]
    backend = TransformersBackend(model, tok, ref=name, max_batch=8)
    enc = [tok(p)["input_ids"] for p in prompts]
    width = max(len(e) for e in enc)
    ids = torch.full((8, width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, e in enumerate(enc):
        ids[i, width - len(e) :], mask[i, width - len(e) :] = torch.tensor(e), 1
    total = 8 * tokens

    def bare(rows: slice) -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            model.generate(
                input_ids=ids[rows],
                attention_mask=mask[rows],
                max_new_tokens=tokens,
                min_new_tokens=tokens,  # the same work as the backend's: no early end
                do_sample=False,
                eos_token_id=stop_token_ids(tok),
                pad_token_id=tok.pad_token_id,
            )
        return time.perf_counter() - start

    def bare_alone() -> float:
        return sum(bare(slice(i, i + 1)) for i in range(8))

    def alone() -> float:
        async def run() -> None:
            for r in reqs:
                assert (await backend.generate(r)).completion_tokens == tokens

        return run_async(run)

    def together() -> float:
        async def run() -> None:
            with backend.scheduler.hold():  # the burst queues up while the worker is busy
                tasks = [asyncio.create_task(backend.generate(r)) for r in reqs]
                while backend.stats()["queue_depth"] < len(reqs):
                    await asyncio.sleep(0.001)
            out = await asyncio.gather(*tasks)
            assert sum(r.completion_tokens for r in out) == total

        return run_async(run)

    bare(slice(0, 8)), alone()  # warm up
    times: dict[str, list[float]] = {"bare1": [], "bare8": [], "one": [], "many": []}
    for _ in range(repeats):  # interleaved, so a busy moment hits every figure alike
        times["bare1"].append(bare_alone())
        times["one"].append(alone())
        times["bare8"].append(bare(slice(0, 8)))
        times["many"].append(together())
    t = {k: min(v) for k, v in times.items()}
    largest = backend.stats()["largest_batch"]
    asyncio.run(backend.aclose())
    return [
        (f"{name}: model.generate, 1 prompt per call (baseline)", total / t["bare1"], 1.0),
        (f"{name}: backend, 8 requests one by one", total / t["one"], t["bare1"] / t["one"]),
        (f"{name}: model.generate, 8 prompts in one call (baseline)", total / t["bare8"], 1.0),
        (
            f"{name}: backend, 8 concurrent (batch of {largest:.0f})",
            total / t["many"],
            t["bare8"] / t["many"],
        ),
    ]


def bench_upstream(requests: int) -> list[tuple[str, float, float]]:
    import httpx
    import uvicorn
    from fastapi import FastAPI

    from luodi.serve.backends.openai import UpstreamBackend

    app = FastAPI()
    reply = {
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }

    @app.post("/v1/chat/completions")
    async def chat() -> dict[str, Any]:
        return reply

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/v1"
    req = GenRequest(messages=[{"role": "user", "content": "hi"}], prompt=None, max_tokens=8)
    body = {
        "model": "m",
        "messages": req.messages,
        "max_tokens": 8,
        "temperature": 1.0,
        "top_p": 1.0,
    }

    async def measure() -> tuple[list[float], list[float]]:
        backend = UpstreamBackend(url, "m")
        raw = httpx.AsyncClient(base_url=url)
        ours, bare = [], []
        for i in range(requests + 20):  # the first 20 warm both pools up
            start = time.perf_counter()
            (await raw.post("/chat/completions", json=body)).json()
            mid = time.perf_counter()
            await backend.generate(req)
            end = time.perf_counter()
            if i >= 20:
                bare.append(mid - start)
                ours.append(end - mid)
        await raw.aclose()
        await backend.aclose()
        return ours, bare

    ours, bare = asyncio.run(measure())
    server.should_exit = True
    thread.join(5)
    rows = []
    for q, label in ((50, "p50"), (95, "p95")):
        o = statistics.quantiles(ours, n=100)[q - 1] * 1000
        b = statistics.quantiles(bare, n=100)[q - 1] * 1000
        rows.append((f"upstream {label} ms: httpx post (baseline)", b, 1.0))
        rows.append((f"upstream {label} ms: openai backend (+{o - b:.2f} ms)", o, b / o))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--figures", default="llama,transformers,upstream")
    p.add_argument("--tokens", type=int, default=128, help="Tokens generated per request.")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--requests", type=int, default=300, help="Upstream requests timed.")
    p.add_argument("--smollm2", action="store_true", help="Also SmolLM2 through transformers.")
    args = p.parse_args()
    figures = set(args.figures.split(","))
    rows: list[tuple[str, float, float]] = []
    if "llama" in figures:
        rows += bench_llama(args.tokens, args.repeats)
    if "transformers" in figures:
        rows += bench_transformers("tiny 5m", *_tiny("5m"), args.tokens, args.repeats)
        if args.smollm2:
            rows += bench_transformers("SmolLM2", *_smollm2(), min(args.tokens, 64), 1)
    if "upstream" in figures:
        rows += bench_upstream(args.requests)
    print(f"CPU threads: {os.cpu_count()}, tokens per request: {args.tokens}", file=sys.stderr)
    print(f"{'figure':>62} | {'tokens/s or ms':>14} | {'x baseline':>10}")
    for name, value, ratio in rows:
        print(f"{name:>62} | {value:14.2f} | {ratio:10.2f}")


if __name__ == "__main__":
    main()
