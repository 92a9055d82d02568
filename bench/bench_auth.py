"""Gateway admission benchmark: what keys, limits, quotas and usage recording add per request.

Run (from the repository root):

    .venv/bin/python bench/bench_auth.py
    .venv/bin/python bench/bench_auth.py --redis redis://127.0.0.1:6379/0 --n 50000

The gateway's added-latency target is p50 <= 1 ms with keys, limits, usage and logging on, so
each step on the request path should cost well under 0.1 ms. Every figure is µs per call
(mean over `--n` calls after a warm-up; p50/p99 from per-call timings), next to a baseline
measured in the same run:

- `authenticate (cached)`: KeyStore.authenticate of a valid key after its first use; baseline:
  sha256 of the key plus a dict lookup (the least a cache keyed by a hash can cost).
- `authorize`: the role and endpoint check; baseline: a set membership test.
- `limiter hit (in-process)`: InProcessLimiter.hit awaited; baseline: awaiting a coroutine
  that returns at once.
- `limiter hit (redis)`, with --redis: RedisLimiter.hit (one EVALSHA); baseline: a PING on
  the same client (one round trip doing nothing).
- `quota check`: Quotas.check of a key with day and month quotas, totals in memory; baseline:
  the same empty coroutine.
- `record usage + request log`: UsageRecorder.record_usage + record_request (the writer
  thread runs meanwhile); baseline: two deque appends.
- `admission total`: all of the above for one request (in-process limiter).

It also reports the writer's throughput: rows per second written (masking included) to the
SQLite store of a temporary home. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from luodi.config import Settings
from luodi.serve.auth import KeyStore, authorize
from luodi.serve.limits import InProcessLimiter, Quotas, RedisLimiter
from luodi.serve.usage import RequestLogEvent, UsageEvent, UsageRecorder
from luodi.store import Store


def timed(fn: Callable[[], object], n: int) -> tuple[float, float, float]:
    """(mean, p50, p99) µs per call of a plain function."""
    for _ in range(min(n, 2000)):
        fn()
    laps = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t = clock()
        fn()
        laps.append(clock() - t)
    laps.sort()
    return (
        statistics.fmean(laps) / 1e3,
        laps[len(laps) // 2] / 1e3,
        laps[int(len(laps) * 0.99)] / 1e3,
    )


async def atimed(fn: Callable[[], Awaitable[object]], n: int) -> tuple[float, float, float]:
    """(mean, p50, p99) µs per awaited call."""
    for _ in range(min(n, 2000)):
        await fn()
    laps = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t = clock()
        await fn()
        laps.append(clock() - t)
    laps.sort()
    return (
        statistics.fmean(laps) / 1e3,
        laps[len(laps) // 2] / 1e3,
        laps[int(len(laps) * 0.99)] / 1e3,
    )


def row(name: str, ours: tuple[float, float, float], base: tuple[float, float, float]) -> None:
    ratio = ours[0] / base[0] if base[0] else float("nan")
    print(
        f"{name:<32} {ours[0]:>8.2f} {ours[1]:>8.2f} {ours[2]:>8.2f} "
        f"{base[0]:>10.2f} {ratio:>7.1f}x"
    )


async def nothing() -> None:
    return None


def usage_event(i: int, key_id: str) -> UsageEvent:
    return UsageEvent(
        request_id=f"r{i}",
        at=datetime.now(UTC),
        key_id=key_id,
        team="bench",
        deployment="faq",
        model_version="faq-bot:v1",
        endpoint="chat.completions",
        prompt_tokens=1,
        completion_tokens=1,
        latency_ms=3.0,
    )


def log_event(i: int, key_id: str) -> RequestLogEvent:
    return RequestLogEvent(
        request_id=f"r{i}",
        at=datetime.now(UTC),
        key_id=key_id,
        team="bench",
        deployment="faq",
        model_version="faq-bot:v1",
        endpoint="chat.completions",
        prompt="我的手机号是13812345678，请问年假有几天？" * 4,
        response="入职满一年后每年十五天年假。" * 4,
    )


async def main_async(args: argparse.Namespace, home: Path) -> None:
    store = Store(Settings(home=home))
    keys = KeyStore(store, cache_ttl_s=3600)
    keys.create_team("bench")
    p, secret = keys.create_key(
        "bench", "user", "bench", rpm=10**9, tokens_per_day=10**12, tokens_per_month=10**13
    )
    recorder = UsageRecorder(store)
    quotas = Quotas(store, recorder)
    limiter = InProcessLimiter()
    n = args.n
    print(f"{'µs per call':<32} {'mean':>8} {'p50':>8} {'p99':>8} {'baseline':>10} {'ratio':>8}")

    cache = {hashlib.sha256(secret.encode()).digest(): p}
    keys.authenticate(secret)
    row(
        "authenticate (cached)",
        timed(lambda: keys.authenticate(secret), n),
        timed(lambda: cache.get(hashlib.sha256(secret.encode()).digest()), n),
    )
    allowed = {"chat.completions"}
    row(
        "authorize",
        timed(lambda: authorize(p, "chat.completions"), n),
        timed(lambda: "chat.completions" in allowed, n),
    )
    base = await atimed(nothing, n)
    row("limiter hit (in-process)", await atimed(lambda: limiter.hit(p.key_id, 10**9), n), base)
    if args.redis:
        rl = RedisLimiter(args.redis, prefix="luodi:bench:")
        await rl.reset(p.key_id)
        rn = min(n, 20_000)
        ping = await atimed(rl._redis.ping, rn)
        row("limiter hit (redis)", await atimed(lambda: rl.hit(p.key_id, 10**9), rn), ping)
        await rl.aclose()
    await quotas.check(p)  # loads the day and month totals once
    row("quota check", await atimed(lambda: quotas.check(p), n), base)

    i = 0

    def record() -> None:
        nonlocal i
        i += 1
        recorder.record_usage(usage_event(i, p.key_id))
        recorder.record_request(log_event(i, p.key_id))

    d1: deque[object] = deque()
    d2: deque[object] = deque()
    ev_u, ev_l = usage_event(0, p.key_id), log_event(0, p.key_id)
    row(
        "record usage + request log",
        timed(record, n),
        timed(lambda: (d1.append(ev_u), d2.append(ev_l)), n),
    )
    recorder.flush()

    async def admission() -> None:
        nonlocal i
        i += 1
        q = keys.authenticate(secret)
        authorize(q, "chat.completions")
        await limiter.hit(q.key_id, 10**9)
        await quotas.check(q)
        recorder.record_usage(usage_event(i, q.key_id))
        recorder.record_request(log_event(i, q.key_id))

    row("admission total", await atimed(admission, n), base)
    recorder.flush()

    # the writer: rows per second, masking included
    m = args.rows
    for j in range(m):
        recorder._usage.append(usage_event(10**9 + j, p.key_id))
        recorder._logs.append(log_event(10**9 + j, p.key_id))
    t = time.perf_counter()
    written = recorder.flush()
    dt = time.perf_counter() - t
    print(f"\nwriter: {written} rows ({m} usage + {m} masked logs) in {dt:.2f} s "
          f"= {written / dt:,.0f} rows/s (SQLite)")  # fmt: skip
    recorder.close()
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000, help="Calls per figure.")
    ap.add_argument("--rows", type=int, default=10_000, help="Rows for the writer figure.")
    ap.add_argument("--redis", default=None, help="Redis URL to time RedisLimiter too.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        asyncio.run(main_async(args, Path(d) / "home"))


if __name__ == "__main__":
    main()
