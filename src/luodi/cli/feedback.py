"""`luodi feedback …`: users' ratings and corrections → datasets, and feedback figures."""

from __future__ import annotations

from pathlib import Path

import typer

from luodi.cli.render import emit_json, err, out, progress_bar, table, validated
from luodi.cli.state import STATE

app = typer.Typer(no_args_is_help=True)

SINCE = typer.Option(
    None,
    "--since",
    help="Feedback given since: 7d, 24h, 2w or an ISO date/time (UTC). Default: all.",
)
JSON = typer.Option(False, "--json", help="Print the result as JSON.")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


@app.command("export")
def export(
    to: str = typer.Option(..., "--to", help="sft (corrections) or dpo (preference pairs)."),
    name: str = typer.Option(..., "--name", help="Dataset to register (its next version)."),
    since: str | None = SINCE,
    until: str | None = typer.Option(None, "--until", help="Feedback given before this time."),
    deployment: str | None = typer.Option(None, "--deployment", help="Only this deployment."),
    model_version: str | None = typer.Option(
        None, "--model-version", help="Only answers of this version (NAME:vN)."
    ),
    team: str | None = typer.Option(None, "--team", help="Only this team's feedback."),
    dedup_against: str | None = typer.Option(
        None,
        "--dedup-against",
        help="Dataset (NAME[:vN]) whose prompts are dropped: do not repeat the training data.",
    ),
    keep_system_prompt: bool = typer.Option(
        False, "--keep-system-prompt", help="Keep the deployment's system prompt in records."
    ),
    min_rating: float | None = typer.Option(
        None, "--min-rating", help="sft: also export uncorrected answers rated ≥ this (0–1)."
    ),
    recipe: Path | None = typer.Option(
        None, "--recipe", help="Cleaning recipe YAML (default: the data stage's for the kind)."
    ),
    as_json: bool = JSON,
) -> None:
    """Turn rated and corrected answers into a new SFT or DPO dataset version."""
    from luodi.errors import BadInputError
    from luodi.feedback import FeedbackExportConfig, run_feedback_export

    cfg = validated(
        FeedbackExportConfig,
        to=to,
        name=name,
        since=since,
        until=until,
        deployment=deployment,
        model_version=model_version,
        team=team,
        dedup_against=dedup_against,
        keep_system_prompt=keep_system_prompt,
        min_rating=min_rating,
        recipe=recipe,
    )
    with progress_bar(not as_json) as p:
        res = run_feedback_export(STATE.store(), cfg, p)
    if res.dataset is None:  # nothing usable: say why, exit 2 (nothing was registered)
        raise BadInputError(res.message or "nothing to export")
    if as_json:
        emit_json(res)
        return
    out.print(
        f"registered [bold]{res.dataset}[/bold] ({res.record_kind}): {res.records} records "
        f"from {res.requests_used} of {res.requests_with_feedback} requests with feedback"
    )
    if res.produced_by:
        out.print(f"answers produced by: {', '.join(res.produced_by)}")
    if res.dedup_against:
        out.print(f"deduplicated against: {res.dedup_against}")
    rows = [["skipped", k, v] for k, v in sorted(res.skipped.items())]
    rows += [[f"cleaning: {op}", k, v] for op, rs in res.cleaning.items() for k, v in rs.items()]
    if rows:
        out.print(table("left out", ["where", "reason", "count"], rows))
    out.print(f"report: {res.report_html}")


@app.command("stats")
def stats(
    since: str | None = SINCE,
    until: str | None = typer.Option(None, "--until", help="Up to this time (default now)."),
    by: str = typer.Option("version", "--by", help="version, deployment or team."),
    team: str | None = typer.Option(None, "--team", help="Only this team."),
    deployment: str | None = typer.Option(None, "--deployment", help="Only this deployment."),
    embedder: str = typer.Option(
        "e5", "--embedder", help="Embedder for topics: e5 (Chinese + English), minilm, a path."
    ),
    no_topics: bool = typer.Option(False, "--no-topics", help="Skip the topic clustering."),
    max_topics: int = typer.Option(8, "--max-topics", min=1, max=50, help="At most this many."),
    as_json: bool = JSON,
) -> None:
    """Thumbs-down rate, mean rating, corrections per version, and top failing topics."""
    from luodi.errors import BadInputError
    from luodi.feedback import feedback_stats
    from luodi.feedback.source import parse_since

    if by not in ("version", "deployment", "team"):
        raise BadInputError(f"--by must be version, deployment or team, not {by!r}")
    res = feedback_stats(
        STATE.store(),
        since=parse_since(since),
        until=parse_since(until),
        by=by,  # type: ignore[arg-type]
        team=team,
        deployment=deployment,
        embedder=None if no_topics else embedder,
        max_topics=max_topics,
    )
    if as_json:
        emit_json(res)
        return
    cols = [by, "requests", "feedback", "rated", "👎", "👎 rate", "mean", "corrections"]
    rows = [
        [
            r.group,
            r.requests,
            r.feedback,
            r.rated,
            r.thumbs_down,
            _pct(r.thumbs_down_rate),
            "-" if r.mean_rating is None else f"{r.mean_rating:.2f}",
            r.corrections,
        ]
        for r in [*res.rows, res.total]
    ]
    when = f"since {res.since:%Y-%m-%d %H:%M}" if res.since else "all time"
    out.print(table(f"feedback by {by}, {when} to {res.until:%Y-%m-%d %H:%M} UTC", cols, rows))
    if res.topics:
        trows = [
            [t.topic, t.size, _pct(t.negative_rate), " | ".join(e[:60] for e in t.examples)]
            for t in res.topics
        ]
        out.print(table("top failing topics", ["#", "👎", "👎 rate", "examples"], trows))
    if res.negatives_unclustered and not no_topics:
        err.print(f"{res.negatives_unclustered} negative requests have no log left to cluster")
