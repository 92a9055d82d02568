"""`luodi monitor report`: the service's signals over time, prompt drift and the ROI view,
as one self-contained HTML page (report_html) and a JSON file with the same numbers.

ROI view (what the enterprise guides ask a deployment to show): requests served, tokens,
estimated cost (prompt and completion tokens at the per-1k prices given, or the `cost:`
section of a rules file), cost per request and the feedback score (mean rating on 0–1, and
the share of negative ratings), overall, per deployment and per model version.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, Field

from luodi.errors import BadInputError, LuodiError
from luodi.monitor import drift as D
from luodi.monitor.rules import Cost
from luodi.monitor.signals import (
    ALL,
    Bucket,
    Signals,
    SignalsReport,
    compute_signals,
    signals_over_time,
)
from luodi.store import Store

HTML_NAME = "monitor.html"
JSON_NAME = "monitor.json"


def default_bucket(span: timedelta) -> timedelta:
    """An hour for windows up to two days, a day up to 120 days, a week beyond."""
    if span <= timedelta(days=2):
        return timedelta(hours=1)
    if span <= timedelta(days=120):
        return timedelta(days=1)
    return timedelta(weeks=1)


class RoiRow(BaseModel):
    """What a deployment (or version, or everything) served and what it cost."""

    group: str = Field(description="Deployment, model version, or 'total'.")
    requests: int = Field(description="Requests served.")
    prompt_tokens: int = Field(description="Prompt tokens.")
    completion_tokens: int = Field(description="Completion tokens.")
    tokens: int = Field(description="Prompt + completion tokens.")
    cost: float = Field(description="Estimated cost at the report's token prices.")
    cost_per_request: float | None = Field(description="cost / requests.")
    tokens_per_request: float | None = Field(description="tokens / requests.")
    error_rate: float | None = Field(description="Share of requests with a status >= 500.")
    latency_p95_ms: float | None = Field(description="95th percentile latency (ms).")
    rated: int = Field(description="Ratings given.")
    mean_rating: float | None = Field(description="Feedback score: mean rating on 0–1.")
    negative_feedback_rate: float | None = Field(description="Share of ratings below 0.5.")


def cost_of(prompt_tokens: int, completion_tokens: int, cost: Cost) -> float:
    """Estimated cost of the tokens at `cost`'s per-1000-token prices."""
    return prompt_tokens / 1000 * cost.in_per_1k + completion_tokens / 1000 * cost.out_per_1k


def roi_row(group: str, s: Signals, cost: Cost) -> RoiRow:
    """The ROI figures of one signals row."""
    c = cost_of(s.prompt_tokens, s.completion_tokens, cost)
    return RoiRow(
        group=group,
        requests=s.requests,
        prompt_tokens=s.prompt_tokens,
        completion_tokens=s.completion_tokens,
        tokens=s.tokens,
        cost=c,
        cost_per_request=c / s.requests if s.requests else None,
        tokens_per_request=s.tokens / s.requests if s.requests else None,
        error_rate=s.error_rate,
        latency_p95_ms=s.latency_p95_ms,
        rated=s.rated,
        mean_rating=s.mean_rating,
        negative_feedback_rate=s.negative_feedback_rate,
    )


class MonitorReport(BaseModel):
    """Everything the monitoring page shows."""

    since: datetime = Field(description="Start of the period (UTC).")
    until: datetime = Field(description="End of the period (UTC).")
    bucket_seconds: float = Field(description="Length of one time bucket of the charts.")
    deployment: str | None = Field(description="The one deployment reported (None: all).")
    cost: Cost = Field(description="Token prices used for the cost figures.")
    roi: RoiRow = Field(description="ROI over the whole period, all deployments.")
    roi_deployments: list[RoiRow] = Field(description="ROI per deployment.")
    roi_versions: list[RoiRow] = Field(description="ROI per model version (all deployments).")
    signals: SignalsReport = Field(description="Signals over the period.")
    buckets: list[Bucket] = Field(description="Signals per time bucket.")
    drift: D.DriftResult | None = Field(description="Prompt drift from the reference data.")
    ood: D.OodResult | None = Field(description="Out-of-domain rate against a knowledge base.")
    notes: list[str] = Field(default_factory=list, description="What could not be measured.")
    generated_at: datetime = Field(description="When the report was made (UTC).")


class ReportFiles(BaseModel):
    """Where `write_report` put the page and its data."""

    html: Path = Field(description="The self-contained HTML page.")
    json_path: Path = Field(description="The JSON file with the same numbers.")
    report: MonitorReport = Field(description="The report.")


def _busiest(signals: SignalsReport) -> str | None:
    deps = [r for r in signals.rows if r.model_version == ALL and r.deployment != ALL]
    deps = [r for r in deps if r.deployment != "-"]
    return max(deps, key=lambda r: r.requests).deployment if deps else None


def build_report(
    store: Store,
    since: datetime,
    until: datetime | None = None,
    *,
    bucket: timedelta | None = None,
    cost: Cost | None = None,
    deployment: str | None = None,
    drift: bool = True,
    reference: str | None = None,
    kb: str | None = None,
    min_score: float | None = None,
    embedder: str = D.DEFAULT_EMBEDDER,
    sample: int = D.DEFAULT_SAMPLE,
) -> MonitorReport:
    """The monitoring report of [since, until) (until: now).

    Drift is measured (unless `drift` is False) from `reference`, else from the training
    data of the version that served `deployment` (default: the busiest deployment); when no
    reference can be found the report says so in `notes`. The out-of-domain rate is measured
    when `kb` is given; an unknown knowledge base is a BadInputError."""
    until = (until or datetime.now(UTC)).astimezone(UTC)
    since = since.astimezone(UTC)
    if until <= since:
        raise BadInputError("the report period ends before it starts")
    bucket = bucket or default_bucket(until - since)
    cost = cost or Cost()
    signals = compute_signals(store, since, until, deployment)
    buckets = signals_over_time(store, since, until, bucket, deployment)
    notes: list[str] = []
    drift_result = None
    if drift:
        target = deployment or (None if reference else _busiest(signals))
        try:
            drift_result = D.prompt_drift(
                store,
                since,
                until,
                deployment=target,
                reference=reference,
                embedder=embedder,
                sample=sample,
                bucket=bucket,
            )
        except LuodiError as exc:
            if reference is not None:
                raise
            notes.append(f"prompt drift not measured: {exc.message}")
    ood = None
    if kb is not None:
        texts = [t for _, t in D.recent_prompts(store, since, until, deployment, None, sample)]
        ood = D.ood_rate(store, kb, texts, min_score)
    rows = signals.rows
    return MonitorReport(
        since=since,
        until=until,
        bucket_seconds=bucket.total_seconds(),
        deployment=deployment,
        cost=cost,
        roi=roi_row("total", signals.total, cost),
        roi_deployments=[
            roi_row(r.deployment, r, cost)
            for r in rows
            if r.model_version == ALL and r.deployment != ALL
        ],
        roi_versions=[
            roi_row(r.model_version, r, cost)
            for r in rows
            if r.deployment == ALL and r.model_version != ALL
        ],
        signals=signals,
        buckets=buckets,
        drift=drift_result,
        ood=ood,
        notes=notes,
        generated_at=datetime.now(UTC),
    )


def write_report(report: MonitorReport, out_dir: Path | str) -> ReportFiles:
    """Write monitor.html and monitor.json into `out_dir` (created when missing)."""
    from luodi.monitor.report_html import render_html

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html_path, json_path = out / HTML_NAME, out / JSON_NAME
    data = report.model_dump(mode="json")
    json_path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return ReportFiles(html=html_path, json_path=json_path, report=report)
