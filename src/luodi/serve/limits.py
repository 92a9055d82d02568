"""Request rate limits (per key, per minute) and token quotas (per key, per UTC day and month).

Rate limits use GCRA (the generic cell rate algorithm): a key with limit L per window W may
send L requests at once, then one every W/L seconds; after a quiet window the whole burst is
back. Unlike a fixed window it never allows 2L requests across a window edge, and it keeps one
number per key (the theoretical arrival time). `InProcessLimiter` keeps it in a dict;
`RedisLimiter` keeps it in Redis and updates it in one Lua script that reads Redis's own clock,
so any number of gateway replicas share each key's limit exactly.

Quotas count prompt + completion tokens. The first check of a key loads its day and month
totals from the usage table (one query, in a worker thread); afterwards the usage recorder
adds each request's tokens to the in-memory totals, so a check costs no query. Totals are
re-read every `refresh_s` seconds to see what other replicas served, and at each UTC day or
month boundary (when they restart from zero).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from sqlalchemy import func, select

from luodi.errors import BadInputError, RateLimitedError
from luodi.serve.auth import Principal
from luodi.store import Store
from luodi.store.models import UsageRow

if TYPE_CHECKING:
    from luodi.serve.usage import UsageEvent, UsageRecorder

log = logging.getLogger("luodi.serve")

WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one rate-limit hit."""

    allowed: bool
    retry_after_s: float  # 0 when allowed; else seconds until one more request is allowed
    remaining: int  # requests still allowed right now after this one (-1: unknown)


class RateLimiter(Protocol):
    """Counts requests per key against a limit per window (60 s in production)."""

    async def hit(self, key: str, limit_per_min: int) -> Decision:
        """Charge one request to `key`; whether it is allowed (a denied hit is not charged)."""
        ...

    async def check(self, key: str, limit_per_min: int) -> Decision:
        """`hit`, raising RateLimitedError (429, with retry_after) when denied."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def _denied(key: str, limit: int, window_s: float, d: Decision) -> RateLimitedError:
    per = "minute" if window_s == WINDOW_S else f"{window_s:g} s"
    return RateLimitedError(
        f"rate limit of {limit} requests per {per} reached for key {key}; "
        f"retry in {d.retry_after_s:.2f} s",
        retry_after=d.retry_after_s,
    )


def _check_limit(limit: int) -> None:
    if limit <= 0:
        raise ValueError(f"a rate limit must be positive, got {limit}")


class InProcessLimiter:
    """GCRA in this process: exact for one gateway process; not shared between replicas."""

    def __init__(self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic):
        self.window_s = window_s
        self._clock = clock
        self._tat: dict[str, float] = {}
        # the event loop runs hits one at a time; the lock covers callers on other threads
        self._lock = threading.Lock()

    def hit_sync(self, key: str, limit_per_min: int) -> Decision:
        """`hit` without the coroutine (the same state)."""
        _check_limit(limit_per_min)
        period = self.window_s
        interval = period / limit_per_min
        with self._lock:
            now = self._clock()
            tat = max(self._tat.get(key, now), now)
            new_tat = tat + interval
            allow_at = new_tat - period
            if now < allow_at:
                return Decision(False, allow_at - now, 0)
            self._tat[key] = new_tat
            if len(self._tat) > 100_000:  # forget keys whose burst is fully back
                self._tat = {k: t for k, t in self._tat.items() if t > now}
        return Decision(True, 0.0, int((period - (new_tat - now)) / interval + 1e-9))

    async def hit(self, key: str, limit_per_min: int) -> Decision:
        """Charge one request to `key` (see RateLimiter.hit)."""
        return self.hit_sync(key, limit_per_min)

    async def check(self, key: str, limit_per_min: int) -> Decision:
        """Charge one request or raise RateLimitedError."""
        d = self.hit_sync(key, limit_per_min)
        if not d.allowed:
            raise _denied(key, limit_per_min, self.window_s, d)
        return d

    async def aclose(self) -> None:
        """Nothing to release."""


# GCRA over Redis's clock (TIME), so replicas with skewed clocks still agree. Times are
# milliseconds as decimal strings: Redis truncates Lua numbers to integers on return.
_GCRA_LUA = """
local period = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = period / limit
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - period
if now < allow_at then
  return {0, string.format('%.3f', allow_at - now), 0}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1)
return {1, '0', math.floor((period - (new_tat - now)) / interval + 1e-9)}
"""


class RedisLimiter:
    """GCRA in Redis, shared by every gateway replica using the same Redis and prefix.

    One round trip per hit (an EVALSHA). If Redis cannot be reached the request is allowed
    (`fail_open`, the default: a limiter outage should not take the API down) and a warning
    is logged at most every 10 s; with `fail_open=False` such requests get a 429.
    """

    def __init__(
        self,
        url: str,
        window_s: float = WINDOW_S,
        prefix: str = "luodi:rl:",
        fail_open: bool = True,
    ) -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.window_s = window_s
        self.prefix = prefix
        self.fail_open = fail_open
        self._redis = aioredis.Redis.from_url(url)
        self._script = self._redis.register_script(_GCRA_LUA)
        self._warned = 0.0

    async def hit(self, key: str, limit_per_min: int) -> Decision:
        """Charge one request to `key` (see RateLimiter.hit)."""
        from redis.exceptions import RedisError

        _check_limit(limit_per_min)
        try:
            ok, retry_ms, remaining = await self._script(
                keys=[self.prefix + key], args=[self.window_s * 1000.0, limit_per_min]
            )
        except (RedisError, OSError) as exc:
            now = time.monotonic()
            if now - self._warned > 10:
                self._warned = now
                log.warning("rate limiter: Redis at %s failed (%s)", self.url, exc)
            if self.fail_open:
                return Decision(True, 0.0, -1)
            return Decision(False, 1.0, 0)
        return Decision(bool(ok), float(retry_ms) / 1000.0, int(remaining))

    async def check(self, key: str, limit_per_min: int) -> Decision:
        """Charge one request or raise RateLimitedError."""
        d = await self.hit(key, limit_per_min)
        if not d.allowed:
            raise _denied(key, limit_per_min, self.window_s, d)
        return d

    async def reset(self, key: str) -> None:
        """Forget `key`'s state (its full burst is available again)."""
        await self._redis.delete(self.prefix + key)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


def make_limiter(redis_url: str | None, window_s: float = WINDOW_S) -> RateLimiter:
    """A RedisLimiter for a redis://, rediss:// or unix:// URL, else an InProcessLimiter."""
    if not redis_url:
        return InProcessLimiter(window_s)
    if not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise BadInputError(
            f"redis_url {redis_url!r} is not a Redis URL (redis://host:6379/0, rediss://…, "
            "unix:///path.sock)"
        )
    return RedisLimiter(redis_url, window_s)


# -- token quotas -----------------------------------------------------------------------------
Period = Literal["day", "month"]


def period_bounds(kind: Period, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the UTC day or month holding `now`."""
    now = now.astimezone(UTC)
    if kind == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start, end


@dataclass(slots=True)
class _Total:
    start: datetime
    end: datetime
    loaded_at: datetime
    tokens: int = 0


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Quotas:
    """Token quotas per key per UTC day and month (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        recorder: UsageRecorder | None = None,
        clock: Callable[[], datetime] = _utcnow,
        refresh_s: float = 60.0,
    ) -> None:
        self.store = store
        self.recorder = recorder
        self.refresh_s = refresh_s
        self._clock = clock
        self._totals: dict[tuple[str, Period], _Total] = {}
        self._loading: dict[tuple[str, Period], asyncio.Future[_Total]] = {}
        self._lock = threading.Lock()
        if recorder is not None:
            recorder.add_listener(self.add)

    def add(self, event: UsageEvent) -> None:
        """Count a recorded request's tokens (the recorder calls this for every usage event)."""
        tokens = event.prompt_tokens + event.completion_tokens
        if not tokens:
            return
        for kind in ("day", "month"):
            t = self._totals.get((event.key_id, kind))
            if t is not None and t.start <= event.at < t.end:
                with self._lock:
                    t.tokens += tokens

    def _load(self, key_id: str, kind: Period, now: datetime) -> _Total:
        """Read `key_id`'s total for the period holding `now` from the usage table."""
        start, end = period_bounds(kind, now)
        total = _Total(start, end, now)
        # count new events from here on, then make every earlier one visible to the query
        # (an event recorded in between may be counted twice: the error is on the safe side)
        self._totals[(key_id, kind)] = total
        if self.recorder is not None:
            self.recorder.flush()
        q = select(func.coalesce(func.sum(UsageRow.prompt_tokens + UsageRow.completion_tokens), 0))
        q = q.where(UsageRow.key_id == key_id, UsageRow.at >= start, UsageRow.at < end)
        with self.store.engine.connect() as conn:
            stored = int(conn.execute(q).scalar_one())
        with self._lock:
            total.tokens += stored
        return total

    async def _total(self, key_id: str, kind: Period, now: datetime) -> _Total:
        t = self._totals.get((key_id, kind))
        if (
            t is not None
            and t.start <= now < t.end
            and (now - t.loaded_at).total_seconds() < self.refresh_s
        ):
            return t
        k = (key_id, kind)
        fut = self._loading.get(k)
        if fut is None:  # one load per key and period, however many requests wait for it
            fut = asyncio.ensure_future(asyncio.to_thread(self._load, key_id, kind, now))
            self._loading[k] = fut
            fut.add_done_callback(lambda _f: self._loading.pop(k, None))
        return await asyncio.shield(fut)

    def used(self, key_id: str, kind: Period) -> int:
        """Tokens `key_id` used in the current period, as far as this process knows (a fresh
        read from the database when it has no current total)."""
        now = self._clock()
        t = self._totals.get((key_id, kind))
        if t is None or not t.start <= now < t.end:
            t = self._load(key_id, kind, now)
        return t.tokens

    async def check(self, principal: Principal) -> None:
        """Raise RateLimitedError (429, code quota_exceeded, retry_after = seconds to the
        next UTC day or month) when `principal` has used up a token quota."""
        limits: list[tuple[Period, int]] = []
        if principal.tokens_per_day is not None:
            limits.append(("day", principal.tokens_per_day))
        if principal.tokens_per_month is not None:
            limits.append(("month", principal.tokens_per_month))
        if not limits:
            return
        now = self._clock()
        for kind, limit in limits:
            total = await self._total(principal.key_id, kind, now)
            if total.tokens >= limit:
                raise RateLimitedError(
                    f"key {principal.key_id} has used {total.tokens} of its {limit} tokens "
                    f"this {kind}; the quota resets at {total.end:%Y-%m-%d %H:%M} UTC",
                    retry_after=(total.end - now).total_seconds(),
                    code="quota_exceeded",
                )

    def status(self, principal: Principal) -> dict[str, Any]:
        """Used and allowed tokens per period for `principal` (for admin views)."""
        out: dict[str, Any] = {}
        for kind, limit in (
            ("day", principal.tokens_per_day),
            ("month", principal.tokens_per_month),
        ):
            out[kind] = {"used": self.used(principal.key_id, kind), "limit": limit}
        return out
