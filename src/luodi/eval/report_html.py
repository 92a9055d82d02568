"""Render an eval report (`luodi.eval.report.report_data`) as one self-contained HTML page.

Same conventions as the dataset report (luodi.data.report_html, whose table, escaping and
chart helpers this reuses): inline CSS, charts as base64 PNG data URIs drawn on matplotlib's
Agg canvas, no scripts, no external URLs, every string from data escaped. Chart labels a
font on this machine cannot draw (Chinese without a CJK font) become `[n]`, the row of the
table beside the chart, so nothing is silently lost and matplotlib never warns.
Numbers are shown with `fmt`; the JSON written next to the page holds them unrounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from luodi.data.report_html import (
    CSS,
    Raw,
    chart_labels,
    e,
    img,
    png,  # the dataset report's Agg + font renderer
    pre,
    table,
)

EXTRA_CSS = """
.badge{display:inline-block;padding:0 .4em;border-radius:3px;font-size:.8em;
vertical-align:middle}.ok{background:#e3f1e3;color:#264}.bad{background:#fbe3dc;color:#a40}
.better{color:#264;font-weight:600}.worse{color:#a40;font-weight:600}
td pre{max-width:28em}
"""
BAR_COLOR = "#4a7ab5"
BUILTIN = "built-in"  # the dataset cell of a task that reads none (safety's shipped prompts)
MAX_CONFUSION_LABELS = 30


def fmt(value: Any) -> str:
    """A number as the report shows it: 4 decimals (1 above 1000), ints as is, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"


def _badge(status: str) -> str:
    cls = "ok" if status == "complete" else "bad"
    return f'<span class="badge {cls}">{e(status.upper())}</span>'


# -- charts ----------------------------------------------------------------------------


def bars(values: dict[str, float], title: str, xlabel: str, unit_range: bool) -> str:
    """Horizontal bars of `values` (labels as drawn by chart_labels), as a data URI."""
    labels = chart_labels(list(values))
    numbers = list(values.values())

    def draw(ax: Any) -> None:
        ax.barh(range(len(numbers)), numbers, color=BAR_COLOR)
        ax.set_yticks(range(len(numbers)), labels)
        ax.invert_yaxis()
        if unit_range:  # room right of 1.0 for the value labels
            ax.set_xlim(0, 1.15)
            ax.set_xticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        for i, v in enumerate(numbers):
            ax.text(v, i, f" {v:.3f}", va="center", fontsize=7)
        ax.set_xlabel(xlabel)
        ax.set_title(title)

    return png(draw, (5.2, 0.7 + 0.24 * max(len(numbers), 3)))


def confusion_chart(labels: Sequence[str], matrix: Sequence[Sequence[int]]) -> str:
    """The confusion matrix as a heat map with counts (rows true, columns predicted)."""
    shown = chart_labels(list(labels))
    k = len(shown)

    def draw(ax: Any) -> None:
        ax.imshow(matrix, cmap="Blues")
        top = max((max(row) for row in matrix if row), default=0)
        for i in range(k):
            for j in range(k):
                v = matrix[i][j]
                color = "white" if top and v > top / 2 else "black"
                ax.text(j, i, str(v), ha="center", va="center", color=color, fontsize=7)
        ax.set_xticks(range(k), shown, rotation=45, ha="right")
        ax.set_yticks(range(k), shown)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title("Confusion matrix")

    side = 2.2 + 0.35 * k
    return png(draw, (side + 0.8, side))


def timing_chart(values: Sequence[float], name: str) -> str:
    """A histogram of per-item timings, in seconds."""

    def draw(ax: Any) -> None:
        ax.hist(values, bins=min(20, max(5, len(values) // 2)), color=BAR_COLOR)
        ax.set_xlabel(f"{name} (seconds)")
        ax.set_ylabel("items")
        ax.set_title(name)

    return png(draw)


# -- sections --------------------------------------------------------------------------


def _header(d: dict[str, Any]) -> str:
    t = d.get("target") or {}
    partial = [s["name"] for s in d["tasks"] if s["status"] != "complete"]
    warn = ""
    if d["status"] != "complete":
        warn = (
            '<p class="warn">This run is PARTIAL: the target failed mid-run; the metrics of '
            f"{e(', '.join(partial) or 'some tasks')} cover only the items scored before.</p>"
        )
    rows = [
        ("target", t.get("ref")),
        ("target kind", t.get("kind")),
        ("target content hash", t.get("content_hash")),
        ("suite", d["suite"]),
        ("status", Raw(_badge(d["status"]))),
        ("seed", d.get("seed")),
        ("started", d.get("started_at")),
        ("seconds", fmt(d.get("seconds"))),
        ("run content hash", d.get("content_hash")),
    ]
    extra = {k: v for k, v in t.items() if k not in ("ref", "kind", "content_hash")}
    if extra:
        rows.append(("target details", pre(extra)))
    return f"<h1>Eval run {e(d['run'])} {_badge(d['status'])}</h1>{warn}" + table(
        ["field", "value"], rows
    )


def _datasets(d: dict[str, Any]) -> str:
    if not d["datasets"]:
        return ""
    rows = []
    for label, ds in d["datasets"].items():
        support = ", ".join(
            f"{s.get('dataset')} [{s.get('split') or 'all'}]" for s in ds.get("support") or []
        )
        rows.append(
            (
                label,
                ds.get("dataset") or BUILTIN,
                ds.get("split") or "all",
                Raw(f"<code>{e(str(ds.get('content_hash') or '')[:16])}</code>"),
                support,
            )
        )
    return "<h2>Dataset versions</h2>" + table(
        ["task", "dataset", "split", "content hash", "few-shot source"], rows
    )


def _libraries(d: dict[str, Any]) -> str:
    libs = d["libraries"]
    if not libs:
        return ""
    return "<h2>Library versions</h2>" + table(list(libs), [[fmt(v) for v in libs.values()]])


def _overview(d: dict[str, Any]) -> str:
    rows = []
    for s in d["tasks"]:
        c = s["counts"]
        rows.append(
            (
                Raw(f'<a href="#task-{e(s["name"])}">{e(s["name"])}</a>'),
                s["task"],
                f"{s['dataset'] or BUILTIN}" + (f" [{s['split']}]" if s["split"] else ""),
                Raw(_badge(s["status"])),
                f"{c.get('scored', 0)}/{c.get('records', 0)}",
                ", ".join(f"{k} {fmt(v)}" for k, v in s["metrics"].items()),
            )
        )
    return "<h2>Tasks</h2>" + table(
        ["task", "type", "dataset", "status", "scored", "metrics"], rows, {4}
    )


def _metrics(s: dict[str, Any]) -> str:
    from luodi.eval.metrics import higher_is_better

    rows = [
        (k, fmt(v), "higher" if higher_is_better(k) else "lower") for k, v in s["metrics"].items()
    ]
    c = s["counts"]
    counts = table(
        ["records", "scored", "skipped", "errors"],
        [[c.get("records"), c.get("scored"), c.get("skipped"), c.get("errors")]],
        {0, 1, 2, 3},
    )
    out = counts + table(["metric", "value", "better"], rows, {1})
    charts = []
    # Scores on a 0..1 scale share one chart; costs (seconds, perplexity) and 0..100 scores
    # would be misread on it, so they stay in the table.
    unit = {
        k: float(v)
        for k, v in s["metrics"].items()
        if 0.0 <= v <= 1.0 and higher_is_better(k) and not k.startswith(("bleu", "chrf"))
    }
    if unit:
        charts.append(img(bars(unit, f"{s['name']}: metrics", "value", True), "metrics"))
    per_subject = s.get("per_subject") or {}
    if per_subject:
        acc = {k: float(v["accuracy"]) for k, v in per_subject.items()}
        charts.append(img(bars(acc, "Accuracy per subject", "accuracy", True), "per subject"))
    conf = s.get("confusion")
    if conf and conf["per_class"]:
        f1 = {k: float(v["f1"]) for k, v in conf["per_class"].items()}
        charts.append(img(bars(f1, "F1 per class", "F1", True), "F1 per class"))
    if charts:
        out += f'<div class="charts">{"".join(charts)}</div>'
    if per_subject:
        rows = [
            (i, k, fmt(v["accuracy"]), v["n"]) for i, (k, v) in enumerate(per_subject.items(), 1)
        ]
        out += "<h3>Per subject</h3>" + table(["#", "subject", "accuracy", "n"], rows, {0, 2, 3})
    return out


def _confusion(s: dict[str, Any]) -> str:
    conf = s.get("confusion")
    if not conf or not conf["labels"]:
        return ""
    labels, matrix = conf["labels"], conf["matrix"]
    out = "<h3>Confusion matrix</h3>"
    if len(labels) <= MAX_CONFUSION_LABELS:
        out += f'<div class="charts">{img(confusion_chart(labels, matrix), "confusion")}</div>'
    head = ["#", "true \\ predicted", *(f"[{i}]" for i in range(1, len(labels) + 1))]
    rows = [(i, lab, *matrix[i - 1]) for i, lab in enumerate(labels, 1)]
    out += table(head, rows, set(range(2, len(labels) + 2)) | {0})
    if conf["per_class"]:
        rows = [
            (k, fmt(v["precision"]), fmt(v["recall"]), fmt(v["f1"]), v["support"])
            for k, v in conf["per_class"].items()
        ]
        out += table(["class", "precision", "recall", "F1", "support"], rows, {1, 2, 3, 4})
    return out


def _timings(s: dict[str, Any]) -> str:
    if not s["timings"]:
        return ""
    charts, rows = [], []
    for name, t in s["timings"].items():
        charts.append(img(timing_chart(t["values"], name), f"{name} histogram"))
        rows.append((name, t["n"], fmt(t["mean"]), fmt(t["p50"]), fmt(t["p95"])))
    return (
        "<h3>Latency</h3>"
        + f'<div class="charts">{"".join(charts)}</div>'
        + table(["timing", "items", "mean s", "p50 s", "p95 s"], rows, {1, 2, 3, 4})
    )


def _items(title: str, items: list[dict[str, Any]], score: str) -> str:
    if not items:
        return ""
    fields = [
        f for f in ("input", "reference", "prediction", "reply") if any(f in it for it in items)
    ]
    rows = [
        (
            it.get("id"),
            it.get("location"),
            fmt(it["score"]),
            *(pre("" if it.get(f) is None else it[f]) for f in fields),
        )
        for it in items
    ]
    return f"<h3>{e(title)}</h3>" + table(["id", "location", score, *fields], rows, {2})


def _problems(s: dict[str, Any]) -> str:
    p = s["problems"]
    out = ""
    if s.get("error"):
        out += f'<p class="warn">Partial: {e(s["error"])}</p>'
    if not (p["skipped"] or p["errors"]):
        return out
    out += (
        f'<h3>Problems <span class="warn">({p["skipped"]} skipped, {p["errors"]} errors)'
        "</span></h3>"
    )
    if len(p["by_reason"]) > 1:
        out += table(["reason", "rows"], list(p["by_reason"].items()), {1})
    rows = [(r.get("kind"), r.get("location"), r.get("id"), r.get("reason")) for r in p["rows"]]
    out += table(["kind", "location", "id", "reason"], rows)
    more = p["skipped"] + p["errors"] - len(p["rows"])
    if more > 0:
        out += f'<p class="muted">{more} more in results.json.</p>'
    return out


def _task(s: dict[str, Any]) -> str:
    split = f" [{e(s['split'])}]" if s["split"] else ""
    head = (
        f'<h2 id="task-{e(s["name"])}">{e(s["name"])} <span class="muted">({e(s["task"])}, '
        f"{e(s['dataset'] or BUILTIN)}{split})</span> {_badge(s['status'])}</h2>"
    )
    parts = [head, _metrics(s), _confusion(s), _timings(s)]
    score = s["main_score"]
    if score:
        word = "highest" if s["higher_is_better"] else "lowest"
        parts.append(f'<p class="muted">Items ranked by {e(score)} ({word} first).</p>')
        parts.append(_items(f"Best items by {score}", s["best"], score))
        parts.append(_items(f"Worst items by {score}", s["worst"], score))
    parts.append(_problems(s))
    return "".join(parts)


def _diff_cell(diff: dict[str, Any], measured: bool = False) -> tuple[Any, ...]:
    ci = diff.get("ci")
    interval = f"[{fmt(ci['low'])}, {fmt(ci['high'])}]" if ci else "-"
    change = "measured" if measured else diff["change"]
    mark = Raw(f'<span class="{e(change)}">{e(change)}</span>')
    return (fmt(diff["diff"]), interval, "yes" if diff["significant"] else "no", mark)


def _comparison(d: dict[str, Any], cmp: dict[str, Any]) -> str:
    base, run = cmp["runs"][0], cmp["runs"][1]
    conf = f"{100 * cmp['confidence']:.0f}%"
    out = (
        f"<h2>Compared with {e(base['ref'])}</h2>"
        f'<p class="muted">Differences are {e(run["ref"])} minus {e(base["ref"])}; {conf} '
        f"bootstrap intervals ({cmp['n_resamples']} resamples, seed {cmp['seed']}) over the "
        "per-item scores, paired by item id; metrics without per-item scores are untested, "
        "and so are measurements (timings, memory), which vary with the machine and its load."
        "</p>"
    )
    if base["status"] != "complete" or run["status"] != "complete":
        out += '<p class="warn">A compared run is partial: its metrics cover fewer items.</p>'
    rows = []
    for t in cmp["tasks"]:
        for m in t["metrics"]:
            rows.append(
                (
                    t["task"],
                    m["metric"],
                    fmt(m["values"][0]),
                    fmt(m["values"][1]),
                    *_diff_cell(m["diffs"][0], bool(m.get("measured"))),
                )
            )
    out += table(
        [
            "task",
            "metric",
            base["ref"],
            run["ref"],
            "difference",
            f"{conf} CI",
            "significant",
            "change",
        ],
        rows,
        {2, 3, 4},
    )
    pairs = [
        (t["task"], *(p[k] for k in ("matched", "only_in_first", "only_in_run", "unusable")))
        for t in cmp["tasks"]
        for p in t["pairs"]
    ]
    out += "<h3>Item matching</h3>" + table(
        ["task", "matched", f"only in {base['ref']}", f"only in {run['ref']}", "unusable"],
        pairs,
        {1, 2, 3, 4},
    )
    return out


def render_html(data: dict[str, Any]) -> str:
    """The report as one self-contained UTF-8 HTML page (inline CSS, PNG data URIs, no JS)."""
    body = "".join(
        [
            _header(data),
            _datasets(data),
            _libraries(data),
            _overview(data),
            *(_task(s) for s in data["tasks"]),
            *(_comparison(data, c) for c in data["comparisons"]),
        ]
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>Eval run {e(data['run'])} — report</title>"
        f"<style>{CSS}{EXTRA_CSS}</style></head><body>{body}</body></html>\n"
    )
