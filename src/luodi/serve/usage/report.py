"""Usage reports (by key, model version, team, deployment, endpoint or UTC day) and the CSV
export for billing.

One pass over the usage rows of the period, aggregated in Python: the same code on SQLite
and PostgreSQL (day boundaries and percentiles do not depend on the database's functions or
its session time zone). Latency percentiles interpolate linearly between order statistics
(numpy's default method).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TextIO, get_args

from pydantic import BaseModel, Field
from sqlalchemy import select

from luodi.errors import BadInputError
from luodi.serve.auth.keys import utc
from luodi.store import Store
from luodi.store.models import ApiKeyRow, UsageRow

GroupBy = Literal["key", "model", "team", "deployment", "endpoint", "day"]
GROUPS: tuple[str, ...] = get_args(GroupBy)

_COLUMN = {
    "key": UsageRow.key_id,
    "model": UsageRow.model_version,
    "team": UsageRow.team,
    "deployment": UsageRow.deployment,
    "endpoint": UsageRow.endpoint,
    "day": UsageRow.at,
}
RECORD_FIELDS = (
    "at",
    "request_id",
    "key_id",
    "team",
    "deployment",
    "model_version",
    "endpoint",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "latency_ms",
    "ttft_ms",
    "status",
    "error_type",
)


class ReportRow(BaseModel):
    """Totals of one group over the period."""

    group: str = Field(description="The key id, model version, team, deployment, endpoint or day.")
    label: str | None = Field(default=None, description="The key's name when grouped by key.")
    requests: int = Field(description="Requests served.")
    errors: int = Field(description="Requests that ended with a status >= 400.")
    prompt_tokens: int = Field(description="Prompt tokens.")
    completion_tokens: int = Field(description="Completion tokens.")
    total_tokens: int = Field(description="Prompt + completion tokens.")
    p50_latency_ms: float | None = Field(description="Median latency in ms.")
    p95_latency_ms: float | None = Field(description="95th percentile latency in ms.")


class UsageReport(BaseModel):
    """A usage report over [since, until)."""

    by: str = Field(description="What the rows are grouped by.")
    since: datetime | None = Field(description="Start of the period (UTC, inclusive).")
    until: datetime = Field(description="End of the period (UTC, exclusive).")
    team: str | None = Field(description="Only this team's usage when set.")
    rows: list[ReportRow] = Field(description="One row per group, by group.")
    total: ReportRow = Field(description="All groups together.")


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The q-quantile (0–1) of ascending `sorted_values`, linear interpolation; None if empty."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    a, b = sorted_values[lo], sorted_values[hi]
    return a + (b - a) * (pos - lo)


_RELATIVE = re.compile(r"^(\d+)([dh])$")


def _parse_time(text: str) -> datetime:
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInputError(
            f"cannot read {text!r} as a date or time (use 2026-11-05 or 2026-11-05T08:00)"
        ) from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def parse_period(period: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """[since, until) in UTC for a period: `7d` / `24h` (the last days / hours), `2026-11`
    (a month), `2026-11-05` (a day) or `SINCE..UNTIL` (ISO dates or times, UNTIL exclusive)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    p = period.strip()
    if m := _RELATIVE.match(p):
        n, unit = int(m.group(1)), m.group(2)
        return now - (timedelta(days=n) if unit == "d" else timedelta(hours=n)), now
    if re.fullmatch(r"\d{4}-\d{2}", p):
        start = _parse_time(p + "-01")
        end = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
        return start, end
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", p):
        start = _parse_time(p)
        return start, start + timedelta(days=1)
    if ".." in p:
        a, _, b = p.partition("..")
        since, until = _parse_time(a), _parse_time(b)
        if until <= since:
            raise BadInputError(f"period {period!r} ends before it starts")
        return since, until
    raise BadInputError(
        f"cannot read period {period!r}: use 7d, 24h, 2026-11, 2026-11-05 or 2026-11-01..2026-11-15"
    )


@dataclass
class _Acc:
    requests: int = 0
    errors: int = 0
    prompt: int = 0
    completion: int = 0
    latencies: list[float] = field(default_factory=list)

    def add(self, prompt: int, completion: int, latency: float, status: int) -> None:
        self.requests += 1
        self.errors += status >= 400
        self.prompt += prompt
        self.completion += completion
        self.latencies.append(latency)

    def row(self, group: str, label: str | None = None) -> ReportRow:
        lat = sorted(self.latencies)
        return ReportRow(
            group=group,
            label=label,
            requests=self.requests,
            errors=self.errors,
            prompt_tokens=self.prompt,
            completion_tokens=self.completion,
            total_tokens=self.prompt + self.completion,
            p50_latency_ms=percentile(lat, 0.5),
            p95_latency_ms=percentile(lat, 0.95),
        )


def _where(q: Any, since: datetime | None, until: datetime, team: str | None) -> Any:
    q = q.where(UsageRow.at < until)
    if since is not None:
        q = q.where(UsageRow.at >= since)
    if team is not None:
        q = q.where(UsageRow.team == team)
    return q


def _group_value(by: str, value: Any) -> str:
    if by == "day":
        return utc(value).date().isoformat()
    return str(value)


def usage_report(
    store: Store,
    by: str = "key",
    since: datetime | None = None,
    until: datetime | None = None,
    team: str | None = None,
) -> UsageReport:
    """Requests, errors, tokens and p50/p95 latency per group over [since, until) (until
    defaults to now; since to the first record), of `team` when given."""
    if by not in GROUPS:
        raise BadInputError(f"cannot group usage by {by!r}: use one of {', '.join(GROUPS)}")
    until = (until or datetime.now(UTC)).astimezone(UTC)
    since = since.astimezone(UTC) if since is not None else None
    q = select(
        _COLUMN[by],
        UsageRow.prompt_tokens,
        UsageRow.completion_tokens,
        UsageRow.latency_ms,
        UsageRow.status,
    )
    q = _where(q, since, until, team)
    groups: dict[str, _Acc] = {}
    total = _Acc()
    with store.engine.connect() as conn:
        for g, pt, ct, lat, status in conn.execution_options(yield_per=10_000).execute(q):
            key = _group_value(by, g)
            acc = groups.get(key)
            if acc is None:
                acc = groups[key] = _Acc()
            acc.add(pt, ct, lat, status)
            total.add(pt, ct, lat, status)
        names: dict[str, str] = {}
        if by == "key" and groups:
            names = dict(
                conn.execute(
                    select(ApiKeyRow.key_id, ApiKeyRow.name).where(ApiKeyRow.key_id.in_(groups))
                ).all()
            )
    return UsageReport(
        by=by,
        since=since,
        until=until,
        team=team,
        rows=[groups[k].row(k, names.get(k)) for k in sorted(groups)],
        total=total.row("total"),
    )


def _safe(value: str | None) -> str | None:
    """Neutralise spreadsheet formulas in free text (CSV injection): prefix a quote."""
    if value and value[0] in "=+-@\t\r":
        return "'" + value
    return value


def _records(
    store: Store, since: datetime | None, until: datetime, team: str | None
) -> Iterable[list[Any]]:
    q = _where(select(UsageRow).order_by(UsageRow.at, UsageRow.id), since, until, team)
    with store.engine.connect() as conn:
        for r in conn.execution_options(yield_per=10_000).execute(q).mappings():
            yield [
                utc(r["at"]).isoformat(),
                r["request_id"],
                r["key_id"],
                r["team"],
                r["deployment"],
                r["model_version"],
                r["endpoint"],
                r["prompt_tokens"],
                r["completion_tokens"],
                r["prompt_tokens"] + r["completion_tokens"],
                r["latency_ms"],
                r["ttft_ms"],
                r["status"],
                r["error_type"],
            ]


def export_csv(
    store: Store,
    out: Path | str | TextIO,
    since: datetime | None = None,
    until: datetime | None = None,
    team: str | None = None,
    by: str = "record",
) -> int:
    """Write usage as CSV with a header row to `out` (a path or an open text file); returns
    the number of data rows. `by="record"` writes one row per request (RECORD_FIELDS); a
    group name (key, model, team, deployment, endpoint, day) writes the report rows."""
    until = (until or datetime.now(UTC)).astimezone(UTC)
    if by == "record":
        header: list[str] = list(RECORD_FIELDS)
        rows: Iterable[list[Any]] = _records(store, since, until, team)
    else:
        report = usage_report(store, by, since, until, team)
        header = list(ReportRow.model_fields)
        rows = ([getattr(r, f) for f in header] for r in report.rows)
        rows = ([*r[:1], _safe(r[1]), *r[2:]] for r in rows)
    if isinstance(out, str | Path):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8", newline="") as f:
            return _write_csv(f, header, rows)
    return _write_csv(out, header, rows)


def _write_csv(f: TextIO | io.StringIO, header: list[str], rows: Iterable[list[Any]]) -> int:
    w = csv.writer(f)
    w.writerow(header)
    n = 0
    for r in rows:
        w.writerow(["" if v is None else v for v in r])
        n += 1
    return n
