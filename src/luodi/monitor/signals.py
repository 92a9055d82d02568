"""Service signals over a time window, per deployment and model version: traffic, errors,
latency, tokens, guard blocks and user feedback.

Read from the gateway's records (luodi.store.models): `usage_records` (one row per request:
status, latency, TTFT, tokens), `request_logs` (guard verdicts; purged after the retention
period, so the guard-block rate covers only requests whose log is still kept) and `feedback`
(ratings on 0–1, attributed to the deployment and version through the request's usage row,
which outlives the log). Feedback counts in the window it was *given* in.

Aggregated in Python over one pass per table, like the usage report: the same numbers on
SQLite and PostgreSQL, percentiles by linear interpolation (numpy's default method).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import func, select

from luodi.errors import BadInputError
from luodi.serve.auth.keys import utc
from luodi.serve.usage.report import percentile
from luodi.store import Store
from luodi.store.models import FeedbackRow, RequestLogRow, UsageRow

ALL = "*"
"""The deployment / model version of a row that aggregates all of them."""
NEGATIVE_BELOW = 0.5
"""A rating below this (on 0–1) is negative feedback: thumbs down, 1–2 of 5 stars."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str | int | float) -> timedelta:
    """`30s`, `15m`, `1h`, `7d`, `2w` (or a number of seconds) as a timedelta > 0;
    BadInputError naming the accepted forms."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        m = _DURATION.match(str(text))
        if not m:
            raise BadInputError(
                f"cannot read duration {text!r}: use a number and a unit, e.g. 30m, 1h, 7d, 2w"
            )
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    if seconds <= 0:
        raise BadInputError(f"duration {text!r} must be longer than zero")
    return timedelta(seconds=seconds)


class Signals(BaseModel):
    """The signals of one deployment and model version (or `*` for all) over a window."""

    deployment: str = Field(description="Deployment name, or * for all deployments.")
    model_version: str = Field(description="Model version that served, or * for all versions.")
    requests: int = Field(description="Requests served (usage rows).")
    server_errors: int = Field(description="Requests that ended with a status >= 500.")
    client_errors: int = Field(description="Requests that ended with a status 400–499.")
    error_rate: float | None = Field(description="server_errors / requests (None: no requests).")
    client_error_rate: float | None = Field(description="client_errors / requests.")
    latency_p50_ms: float | None = Field(description="Median total latency in ms.")
    latency_p95_ms: float | None = Field(description="95th percentile total latency in ms.")
    ttft_p95_ms: float | None = Field(
        description="95th percentile time to first token in ms, over streamed requests."
    )
    prompt_tokens: int = Field(description="Prompt (input) tokens.")
    completion_tokens: int = Field(description="Completion (output) tokens.")
    logged: int = Field(description="Requests whose request log (guard verdicts) is kept.")
    guard_blocks: int = Field(description="Logged requests a guard blocked (input or output).")
    guard_block_rate: float | None = Field(description="guard_blocks / logged.")
    feedback: int = Field(description="Feedback given in the window (with or without rating).")
    rated: int = Field(description="Feedback carrying a rating.")
    negative: int = Field(description=f"Ratings below {NEGATIVE_BELOW} (on 0–1).")
    negative_feedback_rate: float | None = Field(description="negative / rated.")
    mean_rating: float | None = Field(description="Mean rating on 0–1 (1 = best).")

    @property
    def tokens(self) -> int:
        """Prompt + completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclass
class _Acc:
    requests: int = 0
    server_errors: int = 0
    client_errors: int = 0
    prompt: int = 0
    completion: int = 0
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    logged: int = 0
    blocks: int = 0
    feedback: int = 0
    ratings: list[float] = field(default_factory=list)

    def signals(self, deployment: str, model_version: str) -> Signals:
        def rate(n: int, d: int) -> float | None:
            return n / d if d else None

        lat, ttft = sorted(self.latencies), sorted(self.ttfts)
        negative = sum(r < NEGATIVE_BELOW for r in self.ratings)
        return Signals(
            deployment=deployment,
            model_version=model_version,
            requests=self.requests,
            server_errors=self.server_errors,
            client_errors=self.client_errors,
            error_rate=rate(self.server_errors, self.requests),
            client_error_rate=rate(self.client_errors, self.requests),
            latency_p50_ms=percentile(lat, 0.5),
            latency_p95_ms=percentile(lat, 0.95),
            ttft_p95_ms=percentile(ttft, 0.95),
            prompt_tokens=self.prompt,
            completion_tokens=self.completion,
            logged=self.logged,
            guard_blocks=self.blocks,
            guard_block_rate=rate(self.blocks, self.logged),
            feedback=self.feedback,
            rated=len(self.ratings),
            negative=negative,
            negative_feedback_rate=rate(negative, len(self.ratings)),
            mean_rating=sum(self.ratings) / len(self.ratings) if self.ratings else None,
        )


def blocked(guard_log: Any) -> bool:
    """Whether a request log's guard verdicts include a block (input or output)."""
    return isinstance(guard_log, list) and any(
        isinstance(v, dict) and v.get("action") == "block" for v in guard_log
    )


KeyFn = Callable[[datetime, str, str], Iterable[Hashable]]
"""(time, deployment, model version) -> the accumulator keys a row counts in."""


def _window(q: Any, col: Any, since: datetime, until: datetime) -> Any:
    return q.where(col >= since, col < until)


def _filter(q: Any, dep_col: Any, mv_col: Any, deployment: str | None, version: str | None) -> Any:
    if deployment is not None:
        q = q.where(dep_col == deployment)
    if version is not None:
        q = q.where(mv_col == version)
    return q


def scan(
    store: Store,
    since: datetime,
    until: datetime,
    keys: KeyFn,
    deployment: str | None = None,
    model_version: str | None = None,
) -> dict[Hashable, _Acc]:
    """Accumulate the rows of [since, until) (of one deployment / version when given) into
    the accumulators `keys` names for each row. One pass per table."""
    accs: dict[Hashable, _Acc] = {}

    def get(k: Hashable) -> _Acc:
        acc = accs.get(k)
        if acc is None:
            acc = accs[k] = _Acc()
        return acc

    since, until = since.astimezone(UTC), until.astimezone(UTC)
    usage = select(
        UsageRow.at,
        UsageRow.deployment,
        UsageRow.model_version,
        UsageRow.status,
        UsageRow.latency_ms,
        UsageRow.ttft_ms,
        UsageRow.prompt_tokens,
        UsageRow.completion_tokens,
    )
    usage = _filter(
        _window(usage, UsageRow.at, since, until),
        UsageRow.deployment,
        UsageRow.model_version,
        deployment,
        model_version,
    )
    logs = select(
        RequestLogRow.at, RequestLogRow.deployment, RequestLogRow.model_version, RequestLogRow.guard
    )
    logs = _filter(
        _window(logs, RequestLogRow.at, since, until),
        RequestLogRow.deployment,
        RequestLogRow.model_version,
        deployment,
        model_version,
    )
    # One (deployment, version) per request id even if a request left several usage rows.
    served = (
        select(
            UsageRow.request_id,
            func.min(UsageRow.deployment).label("deployment"),
            func.min(UsageRow.model_version).label("model_version"),
        )
        .group_by(UsageRow.request_id)
        .subquery()
    )
    fb = select(FeedbackRow.at, served.c.deployment, served.c.model_version, FeedbackRow.rating)
    fb = fb.outerjoin(served, served.c.request_id == FeedbackRow.request_id)
    fb = _filter(
        _window(fb, FeedbackRow.at, since, until),
        served.c.deployment,
        served.c.model_version,
        deployment,
        model_version,
    )
    with store.engine.connect() as conn:
        for at, dep, mv, status, lat, ttft, pt, ct in conn.execution_options(
            yield_per=10_000
        ).execute(usage):
            for k in keys(utc(at), dep, mv):
                a = get(k)
                a.requests += 1
                a.server_errors += status >= 500
                a.client_errors += 400 <= status < 500
                a.prompt += pt
                a.completion += ct
                a.latencies.append(lat)
                if ttft is not None:
                    a.ttfts.append(ttft)
        for at, dep, mv, guard in conn.execution_options(yield_per=10_000).execute(logs):
            hit = blocked(guard)
            for k in keys(utc(at), dep, mv):
                a = get(k)
                a.logged += 1
                a.blocks += hit
        for at, dep, mv, rating in conn.execution_options(yield_per=10_000).execute(fb):
            # feedback on a request with no usage row counts under deployment/version "-"
            for k in keys(utc(at), dep or "-", mv or "-"):
                a = get(k)
                a.feedback += 1
                if rating is not None:
                    a.ratings.append(float(rating))
    return accs


class SignalsReport(BaseModel):
    """Signals over [since, until): per deployment and version, per deployment, and overall."""

    since: datetime = Field(description="Start of the window (UTC, inclusive).")
    until: datetime = Field(description="End of the window (UTC, exclusive).")
    rows: list[Signals] = Field(
        description="One row per (deployment, model version) and per deployment (model_version "
        "*), sorted; then one per model version over all deployments (deployment *)."
    )
    total: Signals = Field(description="All deployments and versions together.")

    def find(self, deployment: str | None, model_version: str | None) -> Signals:
        """The row of a deployment and version (None = all); an all-zero row when absent."""
        dep, mv = deployment or ALL, model_version or ALL
        if dep == ALL and mv == ALL:
            return self.total
        for r in self.rows:
            if r.deployment == dep and r.model_version == mv:
                return r
        return _Acc().signals(dep, mv)


def _three_keys(at: datetime, dep: str, mv: str) -> tuple[Hashable, ...]:
    return ((dep, mv), (dep, ALL), (ALL, mv), (ALL, ALL))


def compute_signals(
    store: Store,
    since: datetime,
    until: datetime | None = None,
    deployment: str | None = None,
    model_version: str | None = None,
) -> SignalsReport:
    """The signals of [since, until) (until defaults to now), of one deployment and/or model
    version when given."""
    until = (until or datetime.now(UTC)).astimezone(UTC)
    if until <= since:
        raise BadInputError("the window ends before it starts")
    accs = scan(store, since, until, _three_keys, deployment, model_version)
    total = accs.pop((ALL, ALL), _Acc()).signals(ALL, ALL)
    per_version = {k: a for k, a in accs.items() if k[0] != ALL}  # type: ignore[index]
    rows = [a.signals(*k) for k, a in per_version.items()]  # type: ignore[misc]
    rows.sort(key=lambda s: (s.deployment, s.model_version == ALL, s.model_version))
    # keep the version-only rows out of the table but findable: rules may name a version alone
    extra = [a.signals(*k) for k, a in accs.items() if k[0] == ALL]  # type: ignore[index,misc]
    return SignalsReport(since=since, until=until, rows=rows + extra, total=total)


class Bucket(BaseModel):
    """The overall signals (and per deployment) of one time bucket."""

    start: datetime = Field(description="Start of the bucket (UTC, inclusive).")
    total: Signals = Field(description="All deployments together.")
    deployments: dict[str, Signals] = Field(description="Per deployment.")


def signals_over_time(
    store: Store,
    since: datetime,
    until: datetime,
    bucket: timedelta,
    deployment: str | None = None,
) -> list[Bucket]:
    """Signals per `bucket`-long interval of [since, until), oldest first (every bucket,
    empty ones included, so plots show gaps as zero traffic)."""
    since, until = since.astimezone(UTC), until.astimezone(UTC)
    n = max(1, -(-int((until - since).total_seconds()) // int(bucket.total_seconds())))
    if n > 2000:
        raise BadInputError(
            f"{n} buckets of {bucket} in the window; use a longer bucket (at most 2000)"
        )

    def keys(at: datetime, dep: str, mv: str) -> tuple[Hashable, ...]:
        i = int((at - since).total_seconds() // bucket.total_seconds())
        return ((i, ALL), (i, dep))

    accs = scan(store, since, until, keys, deployment)
    deps = sorted({k[1] for k in accs if k[1] != ALL})  # type: ignore[index]
    out = []
    for i in range(n):
        total = accs.get((i, ALL), _Acc()).signals(ALL, ALL)
        per = {d: accs[(i, d)].signals(d, ALL) for d in deps if (i, d) in accs}
        out.append(Bucket(start=since + i * bucket, total=total, deployments=per))
    return out
