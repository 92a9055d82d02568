"""The dataset quality report as one self-contained HTML page.

Everything is inline: CSS in a <style> block, charts as base64 PNG data URIs drawn with
matplotlib's Agg canvas (no pyplot state, no display). No scripts and no external URLs, so
the page opens offline and can be mailed or archived as is. Every string that came from
data or users is escaped. The page carries no timestamp: the same report renders to the
same bytes, which keeps dataset content hashes reproducible.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from luodi.data.report import DatasetReport

DPI = 80
MAX_BARS = 20
MAX_SKIPPED_ROWS = 500
MAX_REASONS = 50
MAX_EXAMPLES = 5
CJK_NAME_HINTS = ("CJK", "Han", "Hei", "Song", "Ming", "Kai", "WenQuanYi", "YaHei", "PingFang")

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans","Noto Sans CJK SC",
"Microsoft YaHei",sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;border-bottom:1px solid #ccc;
padding-bottom:.2em;margin-top:1.6em}h3{font-size:1em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em}
pre{background:#f8f8f8;padding:.4em;white-space:pre-wrap;word-break:break-word;margin:0}
.muted{color:#777}.warn{color:#a40}.charts img{margin:.3em .6em .3em 0;vertical-align:top}
details{margin:.2em 0}summary{cursor:pointer}
"""


def e(value: Any) -> str:
    """HTML-escape any value (quotes included)."""
    return html.escape(str(value), quote=True)


# -- charts ----------------------------------------------------------------------------


@functools.cache
def _fonts() -> tuple[tuple[str, ...], frozenset[int]]:
    """Font families for charts and the code points they can draw.

    A CJK font is added when one is installed; labels the fonts cannot draw are replaced by
    ASCII placeholders, so matplotlib never warns about missing glyphs.
    """
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    base = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans"))
    families = ["DejaVu Sans"]
    covered = set(FT2Font(base).get_charmap())
    for font in font_manager.fontManager.ttflist:
        if not any(h in font.name for h in CJK_NAME_HINTS):
            continue
        try:
            cmap = FT2Font(font.fname).get_charmap()
        except (OSError, RuntimeError):
            continue
        if 0x4E2D in cmap:  # 中
            families.append(font.name)
            covered |= set(cmap)
            break
    return tuple(families), frozenset(covered)


def drawable(text: str) -> bool:
    """Whether chart fonts have a glyph for every character of `text`."""
    covered = _fonts()[1]
    return all(ord(c) in covered for c in text)


def chart_labels(labels: Sequence[str]) -> list[str]:
    """Labels as drawn: as is when drawable, else `[n]` (n = row in the table beside it)."""
    return [lab if drawable(lab) else f"[{i}]" for i, lab in enumerate(labels, 1)]


def png(draw: Any, size: tuple[float, float] = (5.2, 2.6)) -> str:
    """Render `draw(ax)` to a base64 PNG data URI."""
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with rc_context({"font.family": list(_fonts()[0]), "font.size": 8}):
        fig = Figure(figsize=size, dpi=DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        draw(ax)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def bar_chart(counts: dict[str, int], title: str, xlabel: str) -> str:
    """A horizontal bar chart of the largest MAX_BARS counts, as a data URI."""
    items = list(counts.items())[:MAX_BARS]
    labels = chart_labels([str(k) for k, _ in items])
    values = [v for _, v in items]

    def draw(ax: Any) -> None:
        ax.barh(range(len(values)), values, color="#4a7ab5")
        ax.set_yticks(range(len(values)), labels)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
        ax.set_title(title)

    return png(draw, (5.2, 0.6 + 0.22 * max(len(values), 3)))


def hist_chart(edges: list[float], counts: list[int], title: str, xlabel: str, log: bool) -> str:
    """A histogram from precomputed bin edges and counts, as a data URI."""
    if log:  # the first length bin starts at 0, which a log axis cannot show
        edges = [max(x, 0.5) for x in edges]

    def draw(ax: Any) -> None:
        ax.stairs(counts, edges, fill=True, color="#4a7ab5")
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("records")
        ax.set_title(title)

    return png(draw)


def img(uri: str, alt: str) -> str:
    """An <img> for a data URI."""
    return f'<img src="{uri}" alt="{e(alt)}">'


# -- tables ----------------------------------------------------------------------------


class Raw:
    """Already-safe HTML for a table cell."""

    def __init__(self, html_text: str) -> None:
        self.html = html_text


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    numeric: frozenset[int] | set[int] = frozenset(),
) -> str:
    """An HTML table; cells are escaped unless wrapped in `Raw`."""
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="n"' if i in numeric else ""
            text = cell.html if isinstance(cell, Raw) else e("" if cell is None else cell)
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def pre(value: Any) -> Raw:
    """A value as escaped preformatted JSON (strings shown as they are)."""
    if isinstance(value, str):
        return Raw(f"<pre>{e(value)}</pre>")
    text = json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True, default=str)
    return Raw(f"<pre>{e(text)}</pre>")


def counts_table(counts: dict[str, int], key_header: str) -> str:
    """Counts with shares; row numbers match chart placeholders."""
    total = sum(counts.values()) or 1
    rows = [(i, k, v, f"{100 * v / total:.1f}%") for i, (k, v) in enumerate(counts.items(), 1)]
    return table(["#", key_header, "count", "share"], rows, {0, 2, 3})


# -- sections --------------------------------------------------------------------------


def _header(r: DatasetReport) -> str:
    parents = ", ".join(e(p) for p in r.parents) or '<span class="muted">none</span>'
    return f"<h1>Dataset {e(r.name)}</h1>" + table(
        ["stage", "record kind", "rows", "parents"],
        [(r.stage, r.record_kind, r.rows, Raw(parents))],
        {2},
    )


def _splits(r: DatasetReport) -> str:
    if not r.splits:
        return ""
    total = sum(r.splits.values()) or 1
    rows = [(k, v, f"{100 * v / total:.1f}%") for k, v in r.splits.items()]
    return "<h2>Splits</h2>" + table(["split", "records", "share"], rows, {1, 2})


def _sources(r: DatasetReport) -> str:
    if not r.sources:
        return ""
    rows = [
        (s.path, s.format, Raw(f'<code title="{e(s.sha256)}">{e(s.sha256[:12])}</code>'), s.records)
        for s in r.sources
    ]
    return f"<h2>Sources ({len(r.sources)})</h2>" + table(
        ["path", "format", "sha256", "records"], rows, {3}
    )


def _skipped(r: DatasetReport) -> str:
    if not r.skipped:
        return '<h2>Skipped</h2><p class="muted">Nothing was rejected.</p>'
    files = sum(1 for p in r.skipped if p.location is None)
    parts = [
        f'<h2>Skipped <span class="warn">({files} files, {len(r.skipped) - files} rows)</span></h2>'
    ]
    by_reason = Counter(p.reason for p in r.skipped)
    # A summary only helps when reasons repeat; it is capped like the list below.
    if 1 < len(by_reason) < len(r.skipped):
        top = dict(by_reason.most_common(MAX_REASONS))
        parts.append("<h3>By reason</h3>" + counts_table(top, "reason"))
        if len(by_reason) > MAX_REASONS:
            parts.append(f'<p class="muted">{len(by_reason) - MAX_REASONS} more reasons.</p>')
    # Whole rejected files first: losing a file matters more than losing a row.
    ordered = sorted(r.skipped, key=lambda p: p.location is not None)
    shown = ordered[:MAX_SKIPPED_ROWS]
    rows = [(p.path, p.location or "whole file", p.reason) for p in shown]
    parts.append(table(["path", "location", "reason"], rows))
    if len(r.skipped) > len(shown):
        parts.append(f'<p class="muted">{len(r.skipped) - len(shown)} more in report.json.</p>')
    return "".join(parts)


def _examples(op: Any) -> str:
    blocks = []
    for reason, examples in op.examples.items():
        rows = [
            (ex.get("id", ""), ex.get("detail", ""), pre(ex.get("text", "")))
            for ex in examples[:MAX_EXAMPLES]
        ]
        n = op.drop_reasons.get(reason, len(examples))
        blocks.append(
            f"<details><summary>step {op.step} {e(op.op)}: {e(reason)} ({n})</summary>"
            + table(["id", "detail", "text"], rows)
            + "</details>"
        )
    return "".join(blocks)


def _operators(r: DatasetReport) -> str:
    if not r.operators:
        return ""
    rows = []
    for op in r.operators:
        reasons = "<br>".join(f"{e(k)}: {v}" for k, v in op.drop_reasons.items())
        rows.append(
            (
                op.step,
                op.op,
                pre(op.params) if op.params else "",
                op.records_in,
                op.kept,
                op.dropped,
                op.modified,
                Raw(reasons),
            )
        )
    examples = "".join(_examples(op) for op in r.operators if op.examples)
    out = "<h2>Operators</h2>" + table(
        ["step", "op", "params", "in", "kept", "dropped", "modified", "drop reasons"],
        rows,
        {0, 3, 4, 5, 6},
    )
    if examples:
        out += "<h3>Dropped examples (up to 5 per reason)</h3>" + examples
    return out


def _length(profile: dict[str, Any]) -> str:
    length = profile.get("length") or {}
    if not length.get("count"):
        return ""
    keys = ["min", "mean", "p50", "p90", "p99", "max"]
    out = "<h3>Content length (characters)</h3>" + table(
        keys, [[length.get(k) for k in keys]], set(range(len(keys)))
    )
    out += f'<p class="muted">Percentiles: {e(length.get("percentiles", ""))}.</p>'
    hist = length.get("histogram") or {}
    if hist.get("counts"):
        out += img(
            hist_chart(hist["edges"], hist["counts"], "Content length", "characters", True),
            "length histogram",
        )
    return out


def _counts_block(title: str, counts: dict[str, int], key: str, note: str = "") -> str:
    if not counts:
        return ""
    chart = img(bar_chart(counts, title, "records"), title)
    shown = [str(k) for k in list(counts)[:MAX_BARS]]
    if chart_labels(shown) != shown:
        note = (note + " " if note else "") + "Chart label [n] = row n of the table."
    extra = f'<p class="muted">{e(note)}</p>' if note else ""
    return f'<h3>{e(title)}</h3>{extra}<div class="charts">{chart}</div>' + counts_table(
        counts, key
    )


def _profile(r: DatasetReport) -> str:
    p = r.profile
    if not p:
        return ""
    parts = ["<h2>Profile</h2>", _length(p)]
    langs = p.get("languages") or {}
    note = f"{langs.get('sampled', 0)} records checked: {langs.get('method', '')}."
    parts.append(_counts_block("Languages", langs.get("counts") or {}, "language", note))
    parts.append(_counts_block("Labels", p.get("labels") or {}, "label"))
    for key, counts in (p.get("meta") or {}).items():
        parts.append(_counts_block(f"meta.{key}", counts, key))
    if p.get("turns"):
        parts.append(_counts_block("User turns", p["turns"], "turns"))
        parts.append(f"<p>Records with a system message: {e(p.get('has_system', 0))}</p>")
    ratings = p.get("ratings")
    if ratings:
        parts.append(
            "<h3>Ratings</h3>"
            + table(
                ["chosen mean", "rejected mean", "rated pairs"],
                [(ratings.get("chosen_mean"), ratings.get("rejected_mean"), ratings["rated"])],
                {0, 1, 2},
            )
        )
        hist = ratings.get("margin_histogram") or {}
        if ratings.get("rated"):
            parts.append(
                img(
                    hist_chart(
                        hist["edges"], hist["counts"], "Rating margin", "chosen - rejected", False
                    ),
                    "margin histogram",
                )
            )
    return "".join(parts)


def _notes(r: DatasetReport) -> str:
    if not r.notes:
        return ""
    rows = [(k, pre(v)) for k, v in r.notes.items()]
    return "<h2>Notes</h2>" + table(["key", "value"], rows)


def render_html(report: DatasetReport) -> str:
    """The report as one self-contained UTF-8 HTML page (inline CSS, PNG data URIs, no JS)."""
    body = "".join(
        [
            _header(report),
            _splits(report),
            _sources(report),
            _skipped(report),
            _operators(report),
            _profile(report),
            _notes(report),
        ]
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{e(report.name)} — {e(report.stage)} report</title>"
        f"<style>{CSS}</style></head><body>{body}</body></html>\n"
    )
