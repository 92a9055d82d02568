"""The eval run report: one self-contained HTML page and the same content as JSON.

`build_report(store, run, against=[...])` reads a stored eval run (results.json, run.json)
and writes, outside the store (registered folders are never modified):

- `<out>.html`: run header (target, suite, dataset versions, seed, library versions, status),
  per task a metrics table and bar charts, a confusion matrix for classification, a latency
  histogram for items that carry `latency_s` / `ttft_s`, the best and worst items by the
  task's main per-item score, and the problem rows; then the comparison with each `against`
  run (difference, bootstrap interval, significance). Rendering is in `report_html`.
- `<out>.json`: `report_data(...)`, exactly what the page shows (numbers unrounded).

Comparisons are `compare_runs([against, run])` for each baseline, so every difference reads
"this run minus the baseline" and "better" means this run is better.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from luodi.errors import BadInputError
from luodi.eval.compare import compare_runs
from luodi.eval.metrics import higher_is_better
from luodi.eval.runner import RUN_FILE, load_results, resolve_run
from luodi.eval.tasks import TASKS
from luodi.store import ArtifactInfo, Store

ITEMS_SHOWN = 3
PROBLEMS_SHOWN = 50
TEXT_SHOWN = 500
# Item fields a reader needs to judge an item, in display order (others stay in results.json).
ITEM_TEXT_FIELDS = ("input", "reference", "prediction", "reply")
TIMING_FIELDS = ("latency_s", "ttft_s")


class ReportResult(BaseModel):
    """Where a report was written."""

    run: str = Field(description="The eval run reported, SUITE:vN.")
    against: list[str] = Field(description="The runs it was compared with, SUITE:vN.")
    path: str = Field(description="The HTML page.")
    json_path: str = Field(description="The same content as JSON.")


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > TEXT_SHOWN:
        return value[:TEXT_SHOWN] + "…"
    return value


def main_score(task_type: str, items: list[dict[str, Any]]) -> str | None:
    """The per-item score items are ranked by: the task class's `main_score` when its items
    have it, else the first numeric score of any item (a task type no longer registered, a
    metric option that replaced the score); None when items have no scores."""
    scored = [it.get("scores") or {} for it in items]
    preferred = TASKS.get(task_type).main_score if task_type in TASKS else None
    if preferred is not None and any(preferred in s for s in scored):
        return preferred
    for s in scored:
        for name, v in s.items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                return str(name)
    return None


def _shown_item(it: dict[str, Any], score: str) -> dict[str, Any]:
    out = {"id": it.get("id"), "location": it.get("location"), "score": it["scores"][score]}
    out.update({k: _clip(it[k]) for k in ITEM_TEXT_FIELDS if k in it})
    out["scores"] = it.get("scores") or {}
    return out


def best_worst(
    items: list[dict[str, Any]], score: str | None, n: int = ITEMS_SHOWN
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The `n` best and `n` worst items by `score`, by its direction; ties keep dataset order.

    Only an item scoring better than the worst score is "best", only one scoring worse than
    the best score is "worst", and no item is in both: with 1 wrong answer in 6, the worst
    list holds that one item, not two right ones; when every item scores the same, the best
    list shows the first `n` and the worst list is empty.
    """
    if score is None:
        return [], []
    ranked = [
        (i, it)
        for i, it in enumerate(items)
        if isinstance((it.get("scores") or {}).get(score), int | float)
        and math.isfinite(it["scores"][score])
    ]
    if not ranked:
        return [], []
    sign = 1.0 if higher_is_better(score) else -1.0
    goodness = {i: sign * it["scores"][score] for i, it in ranked}
    top, bottom = max(goodness.values()), min(goodness.values())
    if top == bottom:
        return [_shown_item(it, score) for _, it in ranked[:n]], []
    best = sorted((p for p in ranked if goodness[p[0]] > bottom), key=lambda p: -goodness[p[0]])
    best = best[:n]
    taken = {i for i, _ in best}
    rest = [p for p in ranked if p[0] not in taken and goodness[p[0]] < top]
    worst = sorted(rest, key=lambda p: goodness[p[0]])[:n]
    return [_shown_item(it, score) for _, it in best], [_shown_item(it, score) for _, it in worst]


def _percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method), `q` in 0..100."""
    import numpy as np

    return float(np.percentile(values, q))


def timings(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per timing field present in items (`latency_s`, `ttft_s`): values, n, mean, p50, p95."""
    out: dict[str, dict[str, Any]] = {}
    for name in TIMING_FIELDS:
        values = [
            float(it[name])
            for it in items
            if isinstance(it.get(name), int | float)
            and not isinstance(it.get(name), bool)
            and math.isfinite(it[name])
        ]
        if values:
            out[name] = {
                "values": values,
                "n": len(values),
                "mean": sum(values) / len(values),
                "p50": _percentile(values, 50),
                "p95": _percentile(values, 95),
            }
    return out


def _confusion(details: dict[str, Any]) -> dict[str, Any] | None:
    report = details.get("report")
    if not isinstance(report, dict) or "confusion_matrix" not in report:
        return None
    return {
        "labels": [str(x) for x in report.get("labels", [])],
        "matrix": report["confusion_matrix"],
        "per_class": report.get("per_class") or {},
    }


def _problems(task: dict[str, Any]) -> dict[str, Any]:
    rows = task.get("problems") or []
    counts = task.get("counts") or {}
    return {
        "skipped": int(counts.get("skipped", 0)),
        "errors": int(counts.get("errors", 0)),
        "by_reason": dict(Counter(str(p.get("reason")) for p in rows).most_common()),
        "rows": rows[:PROBLEMS_SHOWN],
    }


def _task_section(label: str, task: dict[str, Any], n_items: int) -> dict[str, Any]:
    items = [it for it in task.get("items") or [] if isinstance(it, dict)]
    score = main_score(str(task.get("task")), items)
    best, worst = best_worst(items, score, n_items)
    details = task.get("details") or {}
    return {
        "name": label,
        "task": task.get("task"),
        "dataset": task.get("dataset"),
        "split": task.get("split"),
        "status": task.get("status", "complete"),
        "error": task.get("error"),
        "counts": task.get("counts") or {},
        "metrics": task.get("metrics") or {},
        "per_subject": details.get("per_subject"),
        "main_score": score,
        "higher_is_better": higher_is_better(score) if score else None,
        "best": best,
        "worst": worst,
        "confusion": _confusion(details),
        "timings": timings(items),
        "problems": _problems(task),
    }


def _run_json(info: ArtifactInfo) -> dict[str, Any]:
    path = info.path / RUN_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise BadInputError(f"eval run {info.ref}: cannot read {path}: {exc}") from None


def report_data(
    store: Store, run: str, against: list[str] | None = None, *, n_items: int = ITEMS_SHOWN
) -> dict[str, Any]:
    """Everything the report shows, as JSON-ready data (see the module docstring).

    `run` is SUITE or SUITE:vN; each of `against` anything `compare_runs` resolves (an eval
    run, a model version or a stage). NotFoundError / BadInputError for unknown runs.
    """
    info = resolve_run(store, run)
    body = load_results(info)
    meta = _run_json(info)
    comparisons = []
    for ref in against or []:
        cmp = compare_runs(store, [ref, info.ref])
        comparisons.append(cmp.model_dump(mode="json"))
    tasks = body.get("tasks") or {}
    return {
        "run": info.ref,
        "suite": info.meta.get("suite") or info.name,
        "status": body.get("status", info.meta.get("status", "complete")),
        "target": meta.get("target") or info.meta.get("target") or {"ref": body.get("target")},
        "seed": meta.get("seed", info.meta.get("seed")),
        "started_at": meta.get("started_at"),
        "seconds": meta.get("seconds"),
        "created_at": info.created_at.isoformat(),
        "content_hash": info.content_hash,
        "datasets": meta.get("datasets") or {},
        "libraries": meta.get("libraries") or {},
        "tasks": [_task_section(label, t, n_items) for label, t in tasks.items()],
        "comparisons": comparisons,
    }


def default_out(store: Store, run: str) -> Path:
    """`./<suite>-v<N>-report.html` in the working directory."""
    info = resolve_run(store, run)
    return Path.cwd() / f"{info.name}-v{info.version}-report.html"


def build_report(
    store: Store,
    run_ref: str,
    against: list[str] | None = None,
    out: Path | None = None,
    *,
    n_items: int = ITEMS_SHOWN,
) -> ReportResult:
    """Write the HTML report of eval run `run_ref` to `out` and its JSON beside it.

    `out` defaults to `./<suite>-v<N>-report.html`; the JSON is `out` with suffix `.json`.
    Parent folders are created. Nothing in the store is written. The page has no external
    URL (inline CSS, PNG data URIs, no scripts) and opens offline.
    """
    from luodi.eval.report_html import render_html

    data = report_data(store, run_ref, against, n_items=n_items)
    path = Path(out) if out is not None else default_out(store, run_ref)
    if path.suffix.lower() not in (".html", ".htm"):
        path = path.with_name(path.name + ".html")
    json_path = path.with_suffix(".json")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_html(data), encoding="utf-8")
        json_path.write_text(
            json.dumps(data, ensure_ascii=False, indent=1, default=str), encoding="utf-8"
        )
    except OSError as exc:
        raise BadInputError(f"cannot write the report to {path}: {exc}") from None
    return ReportResult(
        run=data["run"],
        against=[c["runs"][0]["ref"] for c in data["comparisons"]],
        path=str(path),
        json_path=str(json_path),
    )
