"""Render a monitoring report (luodi.monitor.report.MonitorReport) as one self-contained page.

The conventions of the dataset and eval reports (luodi.data.report_html, whose escaping,
table and PNG helpers this reuses): inline CSS, charts as base64 PNG data URIs drawn on
matplotlib's Agg canvas, no scripts, no external URLs, every string from data escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from luodi.data.report_html import CSS, e, img, png, table
from luodi.monitor.report import MonitorReport, RoiRow
from luodi.monitor.signals import Bucket

EXTRA_CSS = (
    ".kpi{display:inline-block;margin:.3em 1.4em .3em 0}.kpi b{font-size:1.4em;display:block}"
)
COLORS = ("#4a7ab5", "#d08a3a", "#5a9e5a", "#b54a4a")


def _num(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.{digits}g}" if abs(v) < 1e5 else f"{v:,.0f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _money(v: float | None, currency: str) -> str:
    if v is None:
        return "-"
    return f"{v:.6g} {currency}".strip()


def line_chart(
    x: Sequence[datetime],
    series: dict[str, Sequence[float | None]],
    title: str,
    ylabel: str,
    bars: bool = False,
) -> str:
    """Series over time (None = a gap) as a data URI; `bars` stacks them as bars."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    def draw(ax: Any) -> None:
        if bars and len(x) > 1:
            width = (x[1] - x[0]) * 0.8
            bottom = [0.0] * len(x)
            for (name, ys), color in zip(series.items(), COLORS, strict=False):
                vals = [y or 0.0 for y in ys]
                ax.bar(x, vals, width=width, bottom=bottom, color=color, label=name, align="edge")
                bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        else:
            for (name, ys), color in zip(series.items(), COLORS, strict=False):
                vals = [float("nan") if y is None else y for y in ys]
                ax.plot(x, vals, marker="o", markersize=2.5, color=color, label=name)
        if x:  # the whole period on every chart, so they line up
            step = x[1] - x[0] if len(x) > 1 else timedelta(hours=1)
            ax.set_xlim(x[0], x[-1] + step)
        loc = AutoDateLocator()
        ax.xaxis.set_major_locator(loc)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(loc))
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        if len(series) > 1:
            ax.legend(fontsize=7)

    return png(draw, (5.4, 2.5))


def _charts(buckets: list[Bucket], r: MonitorReport) -> str:
    if not buckets:
        return ""
    x = [b.start for b in buckets]
    t = [b.total for b in buckets]
    cur = r.cost.currency or "cost units"
    charts = [
        (line_chart(x, {"requests": [s.requests for s in t]}, "Requests", "requests", True), "r"),
        (
            line_chart(
                x,
                {
                    "5xx": [s.error_rate for s in t],
                    "4xx": [s.client_error_rate for s in t],
                    "guard blocks": [s.guard_block_rate for s in t],
                },
                "Error and guard-block rates",
                "share",
            ),
            "errors",
        ),
        (
            line_chart(
                x,
                {
                    "p50": [s.latency_p50_ms for s in t],
                    "p95": [s.latency_p95_ms for s in t],
                    "TTFT p95": [s.ttft_p95_ms for s in t],
                },
                "Latency",
                "ms",
            ),
            "latency",
        ),
        (
            line_chart(
                x,
                {"in": [s.prompt_tokens for s in t], "out": [s.completion_tokens for s in t]},
                "Tokens",
                "tokens",
                True,
            ),
            "tokens",
        ),
        (
            line_chart(
                x,
                {
                    "mean rating": [s.mean_rating for s in t],
                    "negative share": [s.negative_feedback_rate for s in t],
                },
                "Feedback",
                "0-1",
            ),
            "feedback",
        ),
        (
            line_chart(
                x,
                {
                    "cost": [
                        s.prompt_tokens / 1000 * r.cost.in_per_1k
                        + s.completion_tokens / 1000 * r.cost.out_per_1k
                        for s in t
                    ]
                },
                "Estimated cost",
                cur,
                True,
            ),
            "cost",
        ),
    ]
    return '<div class="charts">' + "".join(img(u, a) for u, a in charts) + "</div>"


def _roi_table(rows: list[RoiRow], head: str, currency: str) -> str:
    return table(
        [
            head,
            "requests",
            "tokens in",
            "tokens out",
            "cost",
            "cost / request",
            "tokens / req",
            "5xx rate",
            "p95 ms",
            "ratings",
            "feedback score",
            "negative",
        ],
        [
            (
                r.group,
                _num(r.requests),
                _num(r.prompt_tokens),
                _num(r.completion_tokens),
                _money(r.cost, currency),
                _money(r.cost_per_request, currency),
                _num(r.tokens_per_request),
                _pct(r.error_rate),
                _num(r.latency_p95_ms),
                _num(r.rated),
                _num(r.mean_rating, 3),
                _pct(r.negative_feedback_rate),
            )
            for r in rows
        ],
        set(range(1, 12)),
    )


def _roi(r: MonitorReport) -> str:
    c, cur = r.roi, r.cost.currency
    kpis = [
        ("requests served", _num(c.requests)),
        ("tokens", _num(c.tokens)),
        ("estimated cost", _money(c.cost, cur)),
        ("cost per request", _money(c.cost_per_request, cur)),
        ("feedback score", _num(c.mean_rating, 3)),
        ("negative feedback", _pct(c.negative_feedback_rate)),
    ]
    prices = (
        f"Prices: {r.cost.in_per_1k:g} per 1k prompt tokens, {r.cost.out_per_1k:g} per 1k "
        f"completion tokens {e(cur)}."
    )
    return (
        "<h2>Return on investment</h2>"
        + "".join(f'<span class="kpi"><b>{e(v)}</b>{e(k)}</span>' for k, v in kpis)
        + f'<p class="muted">{prices} Feedback score: mean rating on 0–1 (1 = best).</p>'
        + "<h3>Per deployment</h3>"
        + _roi_table(r.roi_deployments + [r.roi], "deployment", cur)
        + "<h3>Per model version</h3>"
        + _roi_table(r.roi_versions, "model version", cur)
    )


def _signals(r: MonitorReport) -> str:
    rows = [s for s in r.signals.rows if s.deployment != "*"] + [r.signals.total]
    return "<h2>Signals over the period</h2>" + table(
        [
            "deployment",
            "model version",
            "requests",
            "5xx",
            "4xx",
            "p50 ms",
            "p95 ms",
            "TTFT p95 ms",
            "guard blocks",
            "ratings",
            "negative",
            "mean rating",
        ],
        [
            (
                s.deployment,
                s.model_version,
                _num(s.requests),
                _pct(s.error_rate),
                _pct(s.client_error_rate),
                _num(s.latency_p50_ms),
                _num(s.latency_p95_ms),
                _num(s.ttft_p95_ms),
                _pct(s.guard_block_rate),
                _num(s.rated),
                _pct(s.negative_feedback_rate),
                _num(s.mean_rating, 3),
            )
            for s in rows
        ],
        set(range(2, 12)),
    )


def _drift(r: MonitorReport) -> str:
    parts = ["<h2>Prompt drift</h2>"]
    d = r.drift
    if d is not None:
        parts.append(
            table(
                [
                    "reference",
                    "embedder",
                    "deployment",
                    "prompts",
                    "reference prompts",
                    "distance",
                    "baseline (noise)",
                    "ratio",
                ],
                [
                    (
                        d.reference,
                        d.embedder,
                        d.deployment or "all",
                        _num(d.prompts),
                        _num(d.reference_prompts),
                        _num(d.distance),
                        _num(d.baseline),
                        _num(d.ratio, 3),
                    )
                ],
                {3, 4, 5, 6, 7},
            )
        )
        parts.append(
            '<p class="muted">distance = 1 − cosine between the mean embedding of recent prompts '
            "and of the reference prompts; baseline = the same distance between a reference "
            "subset of the same size and the rest of the reference (sampling noise alone). A "
            "ratio near 1 means the prompts look like the training data.</p>"
        )
        if d.points:
            x = [p.start for p in d.points]
            uri = line_chart(
                x,
                {
                    "distance": [p.distance for p in d.points],
                    "baseline": [p.baseline for p in d.points],
                },
                "Prompt drift per bucket",
                "1 - cos",
            )
            parts.append(f'<div class="charts">{img(uri, "drift")}</div>')
    if r.ood is not None:
        o = r.ood
        parts.append(
            "<h3>Out of domain</h3>"
            + table(
                ["knowledge base", "embedder", "threshold", "prompts", "out of domain", "rate"],
                [
                    (
                        o.kb,
                        o.embedder,
                        _num(o.threshold),
                        _num(o.prompts),
                        _num(o.out_of_domain),
                        _pct(o.rate),
                    )
                ],
                {2, 3, 4, 5},
            )
        )
        if o.examples:
            parts.append("<ul>" + "".join(f"<li>{e(t)}</li>" for t in o.examples) + "</ul>")
    if d is None and r.ood is None and not r.notes:
        parts.append('<p class="muted">Not measured.</p>')
    parts.extend(f'<p class="warn">{e(n)}</p>' for n in r.notes)
    return "".join(parts)


def render_html(r: MonitorReport) -> str:
    """The report as one self-contained UTF-8 HTML page (inline CSS, PNG data URIs, no JS)."""
    scope = f"deployment {r.deployment}" if r.deployment else "all deployments"
    head = (
        f"<h1>luodi monitoring — {e(scope)}</h1>"
        f'<p class="muted">{e(f"{r.since:%Y-%m-%d %H:%M}")} to {e(f"{r.until:%Y-%m-%d %H:%M}")} '
        f"UTC, buckets of {e(_num(r.bucket_seconds / 3600, 3))} h; generated "
        f"{e(f'{r.generated_at:%Y-%m-%d %H:%M}')} UTC by <code>luodi monitor report</code>.</p>"
    )
    body = head + _roi(r) + "<h2>Over time</h2>" + _charts(r.buckets, r) + _signals(r) + _drift(r)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>luodi monitoring — {e(scope)}</title>"
        f"<style>{CSS}{EXTRA_CSS}</style></head><body>{body}</body></html>\n"
    )
