"""Usage recorder (batched, masked), reports and CSV against hand sums, purge, feedback, and
token quotas across day/month boundaries — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import random
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event, func, select, text

from luodi.errors import BadInputError, NotFoundError, RateLimitedError
from luodi.serve.auth import KeyStore, Principal
from luodi.serve.limits import Quotas, period_bounds
from luodi.serve.usage import (
    RequestLogEvent,
    UsageEvent,
    UsageRecorder,
    export_csv,
    list_feedback,
    parse_period,
    percentile,
    usage_report,
)
from luodi.store import Store
from luodi.store.models import RequestLogRow, UsageRow

T0 = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)
PHONE = "13812345678"


@pytest.fixture
def recorder(any_store: Store) -> Iterator[UsageRecorder]:
    rec = UsageRecorder(any_store, interval_s=30)  # tests flush explicitly
    yield rec
    rec.close()


def _usage(i: int, at: datetime, key: str = "k1", **kw: object) -> UsageEvent:
    base: dict[str, object] = {
        "request_id": f"r{i}",
        "at": at,
        "key_id": key,
        "team": "support",
        "deployment": "faq",
        "model_version": "faq-bot:v1",
        "endpoint": "chat.completions",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "latency_ms": 20.0,
    }
    return UsageEvent(**(base | kw))  # type: ignore[arg-type]


def _log(i: int, at: datetime, prompt: str = "hi", team: str = "support") -> RequestLogEvent:
    return RequestLogEvent(
        request_id=f"r{i}",
        at=at,
        key_id="k1",
        team=team,
        deployment="faq",
        model_version="faq-bot:v1",
        endpoint="chat.completions",
        prompt=prompt,
        response="ok",
        retrieved=["kb:v1#3"],
        guard=[{"direction": "input", "action": "mask", "categories": ["pii.phone"]}],
    )


def _count(store: Store, table: type) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_recorder_writes_in_batches(any_store: Store, recorder: UsageRecorder) -> None:
    statements: list[tuple[str, bool]] = []

    def spy(conn, cursor, stmt, params, context, executemany) -> None:  # noqa: ANN001
        if stmt.lstrip().upper().startswith("INSERT INTO USAGE_RECORDS"):
            statements.append((stmt, executemany))

    event.listen(any_store.engine, "before_cursor_execute", spy)
    try:
        for i in range(450):
            recorder.record_usage(_usage(i, T0))
        recorder.flush()
    finally:
        event.remove(any_store.engine, "before_cursor_execute", spy)
    assert _count(any_store, UsageRow) == 450
    assert 1 <= len(statements) <= 5  # batched, not one INSERT per request


def test_writer_thread_flushes_on_its_own(any_store: Store) -> None:
    with UsageRecorder(any_store, interval_s=0.05) as rec:
        rec.record_usage(_usage(1, T0))
        rec.record_request(_log(1, T0))
        deadline = time.monotonic() + 5
        while _count(any_store, RequestLogRow) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _count(any_store, UsageRow) == 1 and _count(any_store, RequestLogRow) == 1


def test_request_log_is_masked_before_it_is_stored(
    any_store: Store, recorder: UsageRecorder
) -> None:
    prompt = f"我的电话是{PHONE}，邮箱 zhang.san@example.com，请回电"
    recorder.record_request(_log(1, T0, prompt=prompt))
    recorder.record_request(_log(2, T0, prompt="x" * 200_000))
    recorder.flush()
    with any_store.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM request_logs ORDER BY request_id")).all()
    dump = " ".join(str(v) for row in rows for v in row)
    assert PHONE not in dump and "zhang.san@example.com" not in dump
    with any_store.engine.connect() as conn:
        first, second = conn.execute(select(RequestLogRow).order_by("request_id")).all()
    assert first.prompt_masked == "我的电话是[PHONE]，邮箱 [EMAIL]，请回电"
    assert first.retrieved == ["kb:v1#3"] and first.guard[0]["action"] == "mask"
    assert second.prompt_masked.endswith("[truncated]") and len(second.prompt_masked) < 100_100


def test_duplicate_request_id_drops_only_that_row(
    any_store: Store, recorder: UsageRecorder
) -> None:
    recorder.record_request(_log(1, T0))
    recorder.flush()
    recorder.record_request(_log(1, T0))  # the same id again
    recorder.record_request(_log(2, T0))
    recorder.flush()
    assert _count(any_store, RequestLogRow) == 2
    assert recorder.written["dropped"] == 1


def test_recorder_updates_last_used(any_store: Store, recorder: UsageRecorder) -> None:
    keys = KeyStore(any_store)
    keys.create_team("support")
    p, _ = keys.create_key("support", "user", "web")
    assert keys.get_key(p.key_id).last_used_at is None
    recorder.record_usage(_usage(1, T0, key=p.key_id))
    recorder.record_usage(_usage(2, T0 + timedelta(seconds=5), key=p.key_id))
    recorder.flush()
    assert keys.get_key(p.key_id).last_used_at == T0 + timedelta(seconds=5)


def _random_events(n: int) -> list[UsageEvent]:
    rng = random.Random(1)
    return [
        _usage(
            i,
            T0 + timedelta(hours=rng.randrange(-30, 30), seconds=rng.randrange(3600)),
            key=rng.choice(["k1", "k2", "k3"]),
            team=rng.choice(["support", "sales"]),
            model_version=rng.choice(["faq-bot:v1", "faq-bot:v2"]),
            prompt_tokens=rng.randrange(1, 500),
            completion_tokens=rng.randrange(0, 300),
            latency_ms=rng.uniform(5, 900),
            status=rng.choice([200, 200, 200, 400, 429, 502]),
        )
        for i in range(n)
    ]


def _hand_report(events: list[UsageEvent], attr: str) -> dict[str, dict[str, float]]:
    groups: dict[str, list[UsageEvent]] = defaultdict(list)
    for e in events:
        groups[getattr(e, attr)].append(e)
    return {
        g: {
            "requests": len(es),
            "errors": sum(e.status >= 400 for e in es),
            "prompt_tokens": sum(e.prompt_tokens for e in es),
            "completion_tokens": sum(e.completion_tokens for e in es),
            "p50": float(np.percentile([e.latency_ms for e in es], 50)),
            "p95": float(np.percentile([e.latency_ms for e in es], 95)),
        }
        for g, es in groups.items()
    }


def test_report_equals_hand_sums(any_store: Store, recorder: UsageRecorder) -> None:
    events = _random_events(300)
    for e in events:
        recorder.record_usage(e)
    recorder.flush()
    since, until = T0 - timedelta(hours=12), T0 + timedelta(hours=12)
    inside = [e for e in events if since <= e.at < until]
    assert 0 < len(inside) < len(events)
    for by, attr in (("key", "key_id"), ("model", "model_version"), ("team", "team")):
        rep = usage_report(any_store, by, since, until)
        want = _hand_report(inside, attr)
        assert [r.group for r in rep.rows] == sorted(want)
        for r in rep.rows:
            w = want[r.group]
            assert (r.requests, r.errors, r.prompt_tokens, r.completion_tokens) == (
                w["requests"],
                w["errors"],
                w["prompt_tokens"],
                w["completion_tokens"],
            )
            assert r.total_tokens == r.prompt_tokens + r.completion_tokens
            assert r.p50_latency_ms == pytest.approx(w["p50"])
            assert r.p95_latency_ms == pytest.approx(w["p95"])
        assert rep.total.requests == len(inside)
        assert rep.total.prompt_tokens == sum(e.prompt_tokens for e in inside)
    sales = usage_report(any_store, "key", since, until, team="sales")
    assert sales.total.requests == sum(e.team == "sales" for e in inside)
    days = usage_report(any_store, "day", since, until)
    by_day = defaultdict(int)
    for e in inside:
        by_day[e.at.date().isoformat()] += 1
    assert {r.group: r.requests for r in days.rows} == by_day
    with pytest.raises(BadInputError, match="cannot group"):
        usage_report(any_store, "colour")


def test_report_labels_keys_with_their_names(any_store: Store, recorder: UsageRecorder) -> None:
    keys = KeyStore(any_store)
    keys.create_team("support")
    p, _ = keys.create_key("support", "user", "=cmd|' /C calc'!A0")
    recorder.record_usage(_usage(1, T0, key=p.key_id))
    recorder.flush()
    [row] = usage_report(any_store, "key", T0, T0 + timedelta(1)).rows
    assert row.label == "=cmd|' /C calc'!A0"


def test_csv_round_trips(any_store: Store, recorder: UsageRecorder, tmp_path: Path) -> None:
    events = _random_events(120)
    events[0].ttft_ms, events[0].error_type = 12.5, "upstream_error"
    for e in events:
        recorder.record_usage(e)
    recorder.flush()
    out = tmp_path / "billing" / "usage.csv"
    n = export_csv(any_store, out, T0 - timedelta(days=3), T0 + timedelta(days=3))
    assert n == len(events)
    with open(out, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n
    got = {r["request_id"]: r for r in rows}
    for e in events:
        r = got[e.request_id]
        assert datetime.fromisoformat(r["at"]) == e.at
        assert (r["key_id"], r["team"], r["model_version"]) == (e.key_id, e.team, e.model_version)
        assert int(r["prompt_tokens"]) == e.prompt_tokens
        assert int(r["total_tokens"]) == e.prompt_tokens + e.completion_tokens
        assert float(r["latency_ms"]) == pytest.approx(e.latency_ms)
        assert int(r["status"]) == e.status
        assert (float(r["ttft_ms"]) if r["ttft_ms"] else None) == e.ttft_ms
        assert (r["error_type"] or None) == e.error_type
    grouped = tmp_path / "by_model.csv"
    export_csv(any_store, grouped, T0 - timedelta(days=3), T0 + timedelta(days=3), by="model")
    with open(grouped, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    rep = usage_report(any_store, "model", T0 - timedelta(days=3), T0 + timedelta(days=3))
    assert [(r["group"], int(r["requests"]), int(r["total_tokens"])) for r in rows] == [
        (r.group, r.requests, r.total_tokens) for r in rep.rows
    ]


def test_csv_neutralises_formulas_in_key_names(any_store: Store, tmp_path: Path) -> None:
    keys = KeyStore(any_store)
    keys.create_team("support")
    p, _ = keys.create_key("support", "user", "=HYPERLINK(1)")
    with UsageRecorder(any_store) as rec:
        rec.record_usage(_usage(1, T0, key=p.key_id))
    out = tmp_path / "k.csv"
    export_csv(any_store, out, T0, T0 + timedelta(1), by="key")
    [row] = list(csv.DictReader(open(out, encoding="utf-8", newline="")))
    assert row["label"] == "'=HYPERLINK(1)"


def test_purge_deletes_old_logs_only(any_store: Store, recorder: UsageRecorder) -> None:
    now = T0
    for i, age in enumerate((40, 31, 29, 1)):
        recorder.record_usage(_usage(i, now - timedelta(days=age)))
        recorder.record_request(_log(i, now - timedelta(days=age)))
    recorder.flush()
    assert recorder.purge(30, now=now) == 2
    with any_store.engine.connect() as conn:
        left = conn.execute(select(RequestLogRow.request_id).order_by("request_id")).scalars()
        assert list(left) == ["r2", "r3"]
    assert _count(any_store, UsageRow) == 4  # billing rows stay


def test_feedback(any_store: Store, recorder: UsageRecorder) -> None:
    support = Principal(key_id="k1", team="support", role="user", name="web")
    sales = Principal(key_id="k9", team="sales", role="developer", name="crm")
    admin = Principal(key_id="ka", team="ops", role="admin", name="root")
    recorder.record_usage(_usage(1, T0))
    recorder.record_request(_log(1, T0, prompt=f"call {PHONE}"))
    # not flushed yet: feedback right after the reply still finds its request
    fb = recorder.record_feedback("r1", "4", key=support, scale="1-5", comment=f"ring {PHONE}")
    assert fb.rating == pytest.approx(0.75) and fb.rating_raw == "4" and fb.team == "support"
    assert fb.comment == "ring [PHONE]"
    assert recorder.record_feedback("r1", "👍", key=support).rating == 1.0
    assert recorder.record_feedback("r1", 3, key=support).rating == pytest.approx(0.5)
    fix = recorder.record_feedback("r1", None, correction="The answer is 42.", key=admin)
    assert fix.rating is None and fix.correction == "The answer is 42."
    with pytest.raises(NotFoundError):
        recorder.record_feedback("nope", "up", key=support)
    with pytest.raises(NotFoundError):  # another team's request looks like no request
        recorder.record_feedback("r1", "up", key=sales)
    with pytest.raises(BadInputError, match="cannot read rating"):
        recorder.record_feedback("r1", "meh", key=support)
    with pytest.raises(BadInputError, match="needs a rating"):
        recorder.record_feedback("r1", "", key=support)
    with pytest.raises(BadInputError, match="scale"):
        recorder.record_feedback("r1", 4, key=support, scale="1-7")
    listed = list_feedback(any_store, since=T0 - timedelta(days=1))
    assert [f.id for f in listed] == sorted(f.id for f in listed) and len(listed) == 4
    assert listed[0].prompt == "call [PHONE]" and listed[0].model_version == "faq-bot:v1"
    assert list_feedback(any_store, team="sales") == []
    recorder.purge(0, now=datetime.now(UTC) + timedelta(days=1))
    after = list_feedback(any_store)
    assert len(after) == 4 and after[0].prompt is None  # feedback outlives the log
    assert recorder.record_feedback("r1", "down", key=support).rating == 0.0  # usage row kept


def test_parse_period_and_percentile() -> None:
    now = datetime(2026, 11, 20, 8, 30, tzinfo=UTC)
    assert parse_period("7d", now) == (now - timedelta(days=7), now)
    assert parse_period("24h", now) == (now - timedelta(hours=24), now)
    assert parse_period("2026-11", now) == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
    )
    assert parse_period("2026-12")[1] == datetime(2027, 1, 1, tzinfo=UTC)
    assert parse_period("2026-11-05") == (T0.replace(hour=0), T0.replace(hour=0) + timedelta(1))
    assert parse_period("2026-11-01..2026-11-15T12:00") == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 11, 15, 12, tzinfo=UTC),
    )
    for bad in ("last week", "2026-13", "2026-11-05..2026-11-01"):
        with pytest.raises(BadInputError):
            parse_period(bad, now)
    rng = random.Random(3)
    for n in (1, 2, 7, 100):
        xs = sorted(rng.uniform(0, 100) for _ in range(n))
        for q in (0.5, 0.95, 0.0, 1.0):
            assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q * 100)))
    assert percentile([], 0.5) is None


# -- quotas -------------------------------------------------------------------------------
class WallClock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


def _quota_key(**kw: object) -> Principal:
    return Principal(key_id="q1", team="support", role="user", name="q", **kw)  # type: ignore[arg-type]


def test_day_quota_exhausts_then_resets_at_midnight(
    any_store: Store, recorder: UsageRecorder
) -> None:
    clock = WallClock(datetime(2026, 11, 5, 23, 59, tzinfo=UTC))
    quotas = Quotas(any_store, recorder, clock=clock)
    key = _quota_key(tokens_per_day=100)

    async def run() -> None:
        await quotas.check(key)
        recorder.record_usage(_usage(1, clock.t, key="q1", prompt_tokens=60, completion_tokens=0))
        await quotas.check(key)  # 60 < 100
        recorder.record_usage(_usage(2, clock.t, key="q1", prompt_tokens=30, completion_tokens=10))
        with pytest.raises(RateLimitedError) as ei:
            await quotas.check(key)
        assert ei.value.code == "quota_exceeded" and ei.value.http_status == 429
        assert ei.value.retry_after == pytest.approx(60.0)  # to 00:00 UTC
        assert "100 of its 100 tokens this day" in ei.value.message
        clock.t = datetime(2026, 11, 6, 0, 0, 1, tzinfo=UTC)
        await quotas.check(key)  # a new day

    asyncio.run(run())
    assert quotas.used("q1", "day") == 0 and quotas.used("q1", "month") == 100


def test_month_quota_and_the_database_baseline(any_store: Store, recorder: UsageRecorder) -> None:
    clock = WallClock(datetime(2026, 11, 30, 23, 0, tzinfo=UTC))
    for i, day in enumerate((1, 10, 30)):  # earlier in the month, written by a past process
        at = datetime(2026, 11, day, 9, tzinfo=UTC)
        recorder.record_usage(_usage(i, at, key="q1", prompt_tokens=100, completion_tokens=0))
    recorder.record_usage(_usage(9, datetime(2026, 10, 31, tzinfo=UTC), key="q1"))  # last month
    recorder.flush()
    quotas = Quotas(any_store, recorder, clock=clock)  # a fresh process: totals from the DB
    key = _quota_key(tokens_per_month=300, tokens_per_day=1000)

    async def run() -> None:
        with pytest.raises(RateLimitedError) as ei:
            await quotas.check(key)
        assert ei.value.retry_after == pytest.approx(3600.0)  # to Dec 1st 00:00 UTC
        clock.t = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
        await quotas.check(key)

    asyncio.run(run())


def test_quotas_see_other_replicas_after_refresh(any_store: Store) -> None:
    clock = WallClock(T0)
    with UsageRecorder(any_store, interval_s=30) as mine, UsageRecorder(any_store) as theirs:
        quotas = Quotas(any_store, mine, clock=clock, refresh_s=60)
        key = _quota_key(tokens_per_day=50)
        asyncio.run(quotas.check(key))
        theirs.record_usage(_usage(1, T0, key="q1", prompt_tokens=50, completion_tokens=0))
        theirs.flush()
        asyncio.run(quotas.check(key))  # not re-read yet
        clock.t += timedelta(seconds=61)
        with pytest.raises(RateLimitedError):
            asyncio.run(quotas.check(key))


def test_keys_without_quotas_cost_no_query(any_store: Store) -> None:
    quotas = Quotas(any_store)
    queries: list[str] = []
    listener = lambda *a: queries.append(a[2])  # noqa: E731
    event.listen(any_store.engine, "before_cursor_execute", listener)
    try:
        asyncio.run(quotas.check(_quota_key(rpm=10)))
    finally:
        event.remove(any_store.engine, "before_cursor_execute", listener)
    assert queries == []


def test_period_bounds() -> None:
    assert period_bounds("month", datetime(2026, 12, 15, tzinfo=UTC)) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert period_bounds("day", T0) == (T0.replace(hour=0), T0.replace(hour=0) + timedelta(1))
