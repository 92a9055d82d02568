"""Rate limits: GCRA in process and in Redis (shared by replicas), against a token bucket."""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid

import pytest

from luodi.errors import BadInputError, RateLimitedError
from luodi.serve.limits import Decision, InProcessLimiter, RedisLimiter, make_limiter

REDIS_ENV = "LUODI_TEST_REDIS_URL"


class Clock:
    def __init__(self) -> None:
        self.t = 500.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"{REDIS_ENV} not set")
    return url


def _prefix() -> str:
    return f"luodi:test:{uuid.uuid4().hex[:8]}:"


def test_in_process_burst_then_429_then_refill() -> None:
    clock = Clock()
    lim = InProcessLimiter(window_s=60, clock=clock)
    got = [lim.hit_sync("k", 5) for _ in range(5)]
    assert [d.allowed for d in got] == [True] * 5
    assert [d.remaining for d in got] == [4, 3, 2, 1, 0]
    d = lim.hit_sync("k", 5)
    assert d == Decision(False, pytest.approx(12.0), 0)  # one request per 60/5 s
    with pytest.raises(RateLimitedError) as ei:
        asyncio.run(lim.check("k", 5))
    assert ei.value.http_status == 429 and ei.value.retry_after == pytest.approx(12.0)
    assert ei.value.error_type == "rate_limit_error"
    assert lim.hit_sync("other", 5).allowed  # keys are independent
    clock.t += 11.9
    assert not lim.hit_sync("k", 5).allowed  # denied hits are not charged ...
    clock.t += 0.1
    assert lim.hit_sync("k", 5).allowed  # ... so one is back after exactly 12 s
    assert not lim.hit_sync("k", 5).allowed
    clock.t += 60  # a quiet window brings the whole burst back
    assert [lim.hit_sync("k", 5).allowed for _ in range(6)] == [True] * 5 + [False]


def test_gcra_matches_a_token_bucket() -> None:
    """GCRA with burst L equals a bucket of L tokens refilled at L per window."""
    rng = random.Random(0)
    for limit in (1, 3, 4, 10):
        clock = Clock()
        lim = InProcessLimiter(window_s=60, clock=clock)
        tokens, last = float(limit), clock.t
        for _ in range(400):
            clock.t += rng.choice([0, 0, 0, 1, 2, 5, 15, 30])
            tokens = min(limit, tokens + (clock.t - last) * limit / 60)
            last = clock.t
            want = tokens >= 1 - 1e-9
            if want:
                tokens -= 1
            assert lim.hit_sync("k", limit).allowed == want


def test_in_process_recovers_after_a_short_real_window() -> None:
    lim = InProcessLimiter(window_s=0.3)

    async def run() -> None:
        assert all([(await lim.hit("k", 3)).allowed for _ in range(3)])
        d = await lim.hit("k", 3)
        assert not d.allowed and 0 < d.retry_after_s <= 0.1 + 1e-6
        await asyncio.sleep(0.31)
        assert [(await lim.hit("k", 3)).allowed for _ in range(4)] == [True] * 3 + [False]

    asyncio.run(run())


def test_redis_limits_and_recovers(redis_url: str) -> None:
    async def run() -> None:
        lim = RedisLimiter(redis_url, window_s=0.5, prefix=_prefix())
        try:
            got = [await lim.hit("k", 5) for _ in range(5)]
            assert [d.allowed for d in got] == [True] * 5
            assert [d.remaining for d in got] == [4, 3, 2, 1, 0]
            d = await lim.hit("k", 5)
            assert not d.allowed and 0 < d.retry_after_s <= 0.1 + 1e-3
            with pytest.raises(RateLimitedError) as ei:
                await lim.check("k", 5)
            assert ei.value.retry_after > 0
            assert (await lim.hit("another", 5)).allowed
            await asyncio.sleep(0.52)
            assert [(await lim.hit("k", 5)).allowed for _ in range(6)] == [True] * 5 + [False]
        finally:
            await lim.aclose()

    asyncio.run(run())


def test_two_redis_limiters_share_one_limit(redis_url: str) -> None:
    """Two gateway replicas: together they allow exactly the limit, even when concurrent."""

    async def run() -> None:
        prefix = _prefix()
        a = RedisLimiter(redis_url, window_s=60, prefix=prefix)
        b = RedisLimiter(redis_url, window_s=60, prefix=prefix)
        try:
            got = [await (a if i % 2 else b).hit("k", 6) for i in range(8)]
            assert [d.allowed for d in got] == [True] * 6 + [False] * 2
            hits = [(a if i % 2 else b).hit("burst", 20) for i in range(60)]
            results = await asyncio.gather(*hits)
            assert sum(d.allowed for d in results) == 20
        finally:
            await a.aclose()
            await b.aclose()

    asyncio.run(run())


def test_redis_outage_fails_open_by_default() -> None:
    async def run() -> None:
        down = "redis://127.0.0.1:1/0"  # nothing listens there
        lim = RedisLimiter(down)
        strict = RedisLimiter(down, fail_open=False)
        try:
            t0 = time.perf_counter()
            assert await lim.hit("k", 1) == Decision(True, 0.0, -1)
            assert time.perf_counter() - t0 < 5
            with pytest.raises(RateLimitedError):
                await strict.check("k", 1)
        finally:
            await lim.aclose()
            await strict.aclose()

    asyncio.run(run())


def test_make_limiter(redis_url: str) -> None:
    assert isinstance(make_limiter(None), InProcessLimiter)
    lim = make_limiter(redis_url)
    assert isinstance(lim, RedisLimiter)
    asyncio.run(lim.aclose())
    with pytest.raises(BadInputError, match="not a Redis URL"):
        make_limiter("http://127.0.0.1:6379")
    with pytest.raises(ValueError):
        InProcessLimiter().hit_sync("k", 0)
