"""`luodi usage …`: usage reports, the CSV export for billing, request-log retention."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

from luodi.cli.render import emit_json, err, out, table
from luodi.cli.state import STATE

app = typer.Typer(no_args_is_help=True)

PERIOD = typer.Option(
    "7d",
    "--period",
    help="7d or 24h (the last days/hours), 2026-11 (a month), 2026-11-05 (a day) or "
    "2026-11-01..2026-11-15 (end exclusive). Times are UTC.",
)
TEAM = typer.Option(None, "--team", help="Only this team's usage.")


def _period(period: str) -> tuple[datetime, datetime]:
    from luodi.serve.usage import parse_period

    return parse_period(period)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


@app.command("report")
def report(
    by: str = typer.Option("key", "--by", help="key, model, team, deployment, endpoint or day."),
    period: str = PERIOD,
    team: str | None = TEAM,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Requests, errors, tokens and p50/p95 latency per key, model, team or day."""
    from luodi.serve.usage import usage_report

    since, until = _period(period)
    rep = usage_report(STATE.store(), by, since, until, team)
    if as_json:
        emit_json(rep)
        return
    rows = [
        [
            r.group if not r.label else f"{r.group} ({r.label})",
            r.requests,
            r.errors,
            r.prompt_tokens,
            r.completion_tokens,
            r.total_tokens,
            _ms(r.p50_latency_ms),
            _ms(r.p95_latency_ms),
        ]
        for r in [*rep.rows, rep.total]
    ]
    title = f"usage by {by}, {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC"
    if team:
        title += f", team {team}"
    cols = [by, "requests", "errors", "prompt", "completion", "tokens", "p50 ms", "p95 ms"]
    out.print(table(title, cols, rows))


@app.command("export")
def export(
    out_path: Path = typer.Option(..., "--out", help="CSV file to write."),
    period: str = PERIOD,
    team: str | None = TEAM,
    by: str = typer.Option(
        "record",
        "--by",
        help="record (one row per request) or a grouping: key, model, team, deployment, "
        "endpoint, day.",
    ),
) -> None:
    """Write usage as CSV (with a header row) for billing."""
    from luodi.serve.usage import export_csv

    since, until = _period(period)
    n = export_csv(STATE.store(), out_path, since, until, team, by=by)
    out.print(f"wrote {n} rows to {out_path}")


@app.command("purge-logs")
def purge_logs(
    older_than_days: int = typer.Option(
        ..., "--older-than-days", min=0, help="Delete request logs older than this many days."
    ),
) -> None:
    """Delete old request logs (usage rows and feedback are kept)."""
    from luodi.serve.usage import purge_request_logs

    n = purge_request_logs(STATE.store(), older_than_days)
    err.print(f"deleted {n} request logs older than {older_than_days} days")
