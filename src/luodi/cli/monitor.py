"""`luodi monitor …`: service signals, prompt drift, alert rules and the monitoring report."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from luodi.cli.render import emit_json, err, out, table
from luodi.cli.state import STATE

app = typer.Typer(no_args_is_help=True)

SINCE = typer.Option("1d", "--since", help="Look back this far: 30m, 1h, 1d, 7d, 2w.")
DEPLOYMENT = typer.Option(None, "--deployment", help="Only this deployment.")
JSON = typer.Option(False, "--json", help="Print the result as JSON.")
EMBEDDER = typer.Option(
    "e5", "--embedder", help="Embedder for drift: e5 (Chinese + English), minilm, or a folder."
)
SAMPLE = typer.Option(500, "--sample", min=2, help="Prompts sampled (recent and reference).")
REFERENCE = typer.Option(
    None,
    "--reference",
    help="Reference dataset (NAME or NAME:vN); default: the training data of the version "
    "that served.",
)
KB = typer.Option(None, "--kb", help="Knowledge base for the out-of-domain rate.")
MIN_SCORE = typer.Option(
    None, "--min-score", help="Relevance threshold of --kb (default: its embedder's)."
)


def _since(text: str) -> tuple[datetime, datetime]:
    from luodi.monitor.signals import parse_duration

    now = datetime.now(UTC)
    return now - parse_duration(text), now


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _n(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _state(r: Any) -> str:
    if r.breached:
        return "BREACHED"
    if r.error:
        return "error"
    if r.judged:
        return "ok"
    return "no data" if r.value is None else "too few"


@app.command("check")
def check(
    rules: Path = typer.Option(..., "--rules", help="Rules YAML file (see examples/monitor)."),
    as_json: bool = JSON,
) -> None:
    """Judge the alert rules; exit 0: none breached, 1: one is, 2: a wrong file or rule.

    A wrong rule: an unknown metric or key, knowledge base or reference dataset."""
    from luodi.monitor.rules import check as run_check
    from luodi.monitor.rules import load_rules

    spec = load_rules(rules)
    res = run_check(STATE.store(), spec)
    if as_json:
        emit_json(res)
    else:
        rows = [
            [
                r.name,
                _state(r),
                f"{r.metric} {r.op} {r.threshold:g}",
                _n(r.value),
                "-" if r.requests is None else r.requests,
                r.window,
                r.deployment or "all",
            ]
            for r in res.results
        ]
        cols = ["rule", "state", "condition", "value", "requests", "window", "deployment"]
        out.print(table(f"alert rules at {res.at:%Y-%m-%d %H:%M:%S} UTC", cols, rows))
        for r in res.breached + res.errors:
            err.print(r.why, markup=False, highlight=False)
    if res.errors:
        sys.exit(2)
    if res.breached:
        sys.exit(1)


@app.command("signals")
def signals(
    since: str = SINCE,
    deployment: str | None = DEPLOYMENT,
    as_json: bool = JSON,
) -> None:
    """Requests, errors, latency, tokens, guard blocks and feedback per deployment/version.

    --json adds TTFT p95 and tokens in and out."""
    from luodi.monitor.signals import ALL, compute_signals

    start, end = _since(since)
    rep = compute_signals(STATE.store(), start, end, deployment)
    if as_json:
        emit_json(rep)
        return
    rows = [
        [
            s.deployment,
            s.model_version,
            s.requests,
            _pct(s.error_rate),
            _pct(s.client_error_rate),
            _n(s.latency_p50_ms),
            _n(s.latency_p95_ms),
            s.tokens,
            _pct(s.guard_block_rate),
            s.rated,
            _pct(s.negative_feedback_rate),
            _n(s.mean_rating),
        ]
        for s in [*(r for r in rep.rows if r.deployment != ALL), rep.total]
    ]
    cols = ["deployment", "version", "requests", "5xx", "4xx", "p50 ms", "p95 ms", "tokens",
            "blocked", "ratings", "negative", "rating"]  # fmt: skip
    out.print(table(f"signals over the last {since}", cols, rows))


@app.command("drift")
def drift(
    since: str = SINCE,
    deployment: str | None = DEPLOYMENT,
    model_version: str | None = typer.Option(
        None, "--model-version", help="Only prompts this version served."
    ),
    reference: str | None = REFERENCE,
    kb: str | None = KB,
    min_score: float | None = MIN_SCORE,
    embedder: str = EMBEDDER,
    sample: int = SAMPLE,
    as_json: bool = JSON,
) -> None:
    """Prompt drift from the training data, and out-of-domain rate against a knowledge base.

    Drift: centroid distance of recent and reference prompt embeddings, with the distance
    sampling noise alone gives (baseline). With --kb: the share of prompts the knowledge base
    has nothing relevant for."""
    from luodi.monitor import drift as D

    store = STATE.store()
    start, end = _since(since)
    d = D.prompt_drift(
        store,
        start,
        end,
        deployment=deployment,
        model_version=model_version,
        reference=reference,
        embedder=embedder,
        sample=sample,
    )
    ood = None
    if kb is not None:
        rows = D.recent_prompts(store, start, end, deployment, model_version, sample)
        texts = [t for _, t in rows]
        ood = D.ood_rate(store, kb, texts, min_score)
    if as_json:
        emit_json({"drift": d.model_dump(mode="json"), "ood": ood and ood.model_dump(mode="json")})
        return
    out.print(
        table(
            f"prompt drift over the last {since}",
            ["reference", "embedder", "prompts", "ref prompts", "distance", "baseline", "ratio"],
            [
                [
                    d.reference,
                    d.embedder,
                    d.prompts,
                    d.reference_prompts,
                    _n(d.distance),
                    _n(d.baseline),
                    _n(d.ratio),
                ]
            ],
        )
    )
    if d.ratio is not None:
        out.print(
            f"ratio {d.ratio:.2f}: about 1 means the prompts look like {d.reference}; several "
            "times more means they moved away from it."
        )
    if ood is not None:
        out.print(
            f"out of domain vs {ood.kb}: {ood.out_of_domain}/{ood.prompts} prompts "
            f"({_pct(ood.rate)}) have no chunk with cosine >= {ood.threshold:g}"
        )


@app.command("report")
def report(
    since: str = typer.Option("30d", "--since", help="Period to report: 1d, 7d, 30d, 12w..."),
    out_dir: Path = typer.Option(Path("monitor-report"), "--out", help="Folder to write into."),
    deployment: str | None = DEPLOYMENT,
    bucket: str | None = typer.Option(
        None, "--bucket", help="Chart bucket: 1h, 1d, 1w (default by the period's length)."
    ),
    cost_in: float | None = typer.Option(
        None, "--cost-in", min=0, help="Price of 1000 prompt tokens (overrides --rules cost)."
    ),
    cost_out: float | None = typer.Option(
        None, "--cost-out", min=0, help="Price of 1000 completion tokens."
    ),
    currency: str | None = typer.Option(None, "--currency", help="Currency label, e.g. CNY."),
    rules: Path | None = typer.Option(
        None, "--rules", help="A rules file whose `cost:` section gives the token prices."
    ),
    drift: bool = typer.Option(True, "--drift/--no-drift", help="Measure prompt drift."),
    reference: str | None = REFERENCE,
    kb: str | None = KB,
    min_score: float | None = MIN_SCORE,
    embedder: str = EMBEDDER,
    sample: int = SAMPLE,
) -> None:
    """Write the monitoring page (HTML + JSON): signals over time, drift, ROI.

    ROI: requests served, tokens, estimated cost per request, feedback score."""
    from luodi.monitor.report import build_report, write_report
    from luodi.monitor.rules import Cost, load_rules
    from luodi.monitor.signals import parse_duration

    cost = Cost()
    if rules is not None:
        cost = load_rules(rules).cost or cost
    update = {
        k: v
        for k, v in {"in_per_1k": cost_in, "out_per_1k": cost_out, "currency": currency}.items()
        if v is not None
    }
    cost = cost.model_copy(update=update)
    start, end = _since(since)
    rep = build_report(
        STATE.store(),
        start,
        end,
        bucket=parse_duration(bucket) if bucket else None,
        cost=cost,
        deployment=deployment,
        drift=drift,
        reference=reference,
        kb=kb,
        min_score=min_score,
        embedder=embedder,
        sample=sample,
    )
    files = write_report(rep, out_dir)
    c = rep.roi
    per = "-" if c.cost_per_request is None else f"{c.cost_per_request:.6g}"
    out.print(
        f"{c.requests} requests, {c.tokens} tokens, cost {c.cost:.6g} {cost.currency} "
        f"({per} per request), feedback score {_n(c.mean_rating)}"
    )
    for n in rep.notes:
        err.print(n, markup=False, highlight=False)
    out.print(f"wrote {files.html} and {files.json_path}")
