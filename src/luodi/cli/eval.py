"""`luodi eval …`: run suites, show runs, compare them, gate releases (thin over luodi.eval)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from luodi.cli.render import emit_json, err, lineage_tree, out, progress_bar, table
from luodi.cli.state import STATE

app = typer.Typer(no_args_is_help=True)

JSON = typer.Option(False, "--json", help="Print the result as JSON.")
_PROBLEMS_SHOWN = 10


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}"


def _print_run(res: Any) -> None:
    """The run's tasks as a table, then its problems (first few per task)."""
    rows = []
    for t in res.tasks:
        head = [
            t.name,
            (t.dataset or "built-in") + (f" [{t.split}]" if t.split else ""),
            t.status,
            f"{t.counts.scored}/{t.counts.records}",
            t.counts.skipped,
            t.counts.errors,
        ]
        metrics = list(t.metrics.items()) or [("-", None)]
        for i, (name, value) in enumerate(metrics):
            rows.append([*(head if i == 0 else [""] * len(head)), name, _fmt(value)])
    target = res.target if res.target != "none" else "no target (retrieval only)"
    title = f"eval run {res.run}: {target} ({res.status})"
    columns = ["task", "dataset", "status", "scored", "skip", "err", "metric", "value"]
    out.print(table(title, columns, rows))
    read = [f"{p.ref} ({p.role})" for p in res.parents if p.role != "target"]
    if read:
        out.print("read: " + ", ".join(read), highlight=False)
    for t in res.tasks:
        if t.error:
            err.print(f"{t.name}: partial: {t.error}", highlight=False, markup=False)
        for p in t.problems[:_PROBLEMS_SHOWN]:
            where = p.location or p.id
            out.print(f"{t.name}: {p.kind} {where} (id {p.id}): {p.reason}", highlight=False)
        more = t.counts.skipped + t.counts.errors - min(len(t.problems), _PROBLEMS_SHOWN)
        if more > 0:
            out.print(f"{t.name}: … {more} more problem rows (see results.json)", highlight=False)


@app.command("run")
def run(
    target: str | None = typer.Argument(
        None,
        help="NAME[:vN|@STAGE], a base model or path, or openai:http://HOST:PORT/v1#MODEL. "
        "Leave it out when no task calls a model (retrieval with `faithfulness: false`).",
    ),
    suite: Path = typer.Option(..., "--suite", help="Suite YAML (name + tasks)."),
    seed: int = typer.Option(0, "--seed", help="Seed for everything random (same seed, same run)."),
    batch_size: int = typer.Option(16, "--batch-size", help="Forward-pass batch of a local model."),
    as_json: bool = JSON,
) -> None:
    """Score a target on a suite and store the run (exit 1 when the run is partial).

    Without a target, a suite whose tasks call no model runs and is stored with target "none".
    """
    from luodi.eval import load_suite, run_eval

    spec = load_suite(suite)
    with progress_bar(not as_json) as p:
        res = run_eval(STATE.store(), target, spec, seed=seed, batch_size=batch_size, progress=p)
    if as_json:
        emit_json(res)
    else:
        _print_run(res)
        out.print(f"stored as {res.run} in {res.path}", highlight=False)
    if res.status != "complete":
        err.print(
            f"run {res.run} is PARTIAL: the target failed mid-run; its metrics cover only the "
            "items scored before the failure",
            highlight=False,
        )
        raise typer.Exit(1)


@app.command("show")
def show(
    run: str = typer.Argument(..., help="Eval run, SUITE or SUITE:vN."),
    as_json: bool = JSON,
) -> None:
    """Show a stored eval run: tasks, metrics, counts and problem rows."""
    from luodi.eval import show_run

    res = show_run(STATE.store(), run)
    if as_json:
        emit_json(res)
        return
    _print_run(res)
    out.print(f"files: {res.path}", highlight=False)


@app.command("lineage")
def lineage(
    run: str = typer.Argument(..., help="Eval run, SUITE or SUITE:vN."),
    as_json: bool = JSON,
) -> None:
    """Walk a run's parents (target, datasets, knowledge bases) back to their source files."""
    from luodi.eval.runner import KIND

    node = STATE.store().lineage(run, KIND)
    if as_json:
        emit_json(node)
        return
    out.print(lineage_tree(node))


@app.command("compare")
def compare(
    runs: list[str] = typer.Argument(..., help="Eval runs (SUITE:vN or a model ref), 2 or more."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    as_json: bool = JSON,
) -> None:
    """Compare runs metric by metric against the first, with bootstrap 95% intervals."""
    from luodi.eval.compare import compare_runs

    cmp = compare_runs(STATE.store(), runs, seed=seed)
    if as_json:
        emit_json(cmp)
        return
    refs = [r.ref for r in cmp.runs]
    rows = []
    for t in cmp.tasks:
        for m in t.metrics:
            diffs = []
            for d in m.diffs:
                if d.diff is None:
                    diffs.append("-")
                    continue
                text = f"{d.diff:+.4f}"
                if d.ci is not None:
                    text += f" [{d.ci.low:+.4f}, {d.ci.high:+.4f}]"
                mark = {"better": " ▲", "worse": " ▼"}.get(d.change, "")
                diffs.append(text + mark + (" *" if d.significant else ""))
            name = m.metric + (" ~" if m.measured else "")
            rows.append([t.task, name, *(_fmt(v) for v in m.values), *diffs])
    columns = ["task", "metric", *refs, *(f"{r} − {refs[0]}" for r in refs[1:])]
    out.print(table(f"compare ({cmp.confidence:.0%} bootstrap CI)", columns, rows))
    partial = [r.ref for r in cmp.runs if r.status != "complete"]
    if partial:
        err.print(f"partial runs (metrics cover fewer items): {', '.join(partial)}")
    out.print("* significant; ▲ better, ▼ worse (by each metric's direction)", highlight=False)
    if any(m.measured for t in cmp.tasks for m in t.metrics):
        out.print(
            "~ measured (timings, memory): varies with the machine and its load, so not tested "
            "for significance; a gate rule naming it still checks it",
            highlight=False,
        )


@app.command("gate")
def gate_(
    candidate: str = typer.Argument(..., help="The candidate eval run, SUITE or SUITE:vN."),
    against: str = typer.Option(
        "production",
        "--against",
        help="Baseline eval run (SUITE:vN, a model ref) or 'production': the run of the "
        "candidate's model in production on the same suite and datasets.",
    ),
    rules: Path = typer.Option(..., "--rules", help="Gate rules YAML (thresholds, no_regression)."),
    as_json: bool = JSON,
) -> None:
    """Check a candidate run against rules and a baseline; exit 0 on pass, 1 on fail."""
    from luodi.eval.gate import gate, load_gate_rules
    from luodi.eval.runner import production_run

    spec = load_gate_rules(rules)
    store = STATE.store()
    baseline = production_run(store, candidate).ref if against == "production" else against
    verdict = gate(store, candidate, baseline, spec)
    if as_json:
        emit_json(verdict)
    else:
        rows = [[c.name, "pass" if c.passed else "FAIL", c.detail] for c in verdict.checks]
        title = f"gate {verdict.candidate} against {verdict.against}"
        out.print(table(title, ["check", "result", "detail"], rows))
        word = "PASSED" if verdict.passed else "FAILED"
        out.print(f"{word}; verdict stored as {verdict.ref}", highlight=False)
    if not verdict.passed:
        raise typer.Exit(1)


@app.command("report")
def report(
    run: str = typer.Argument(..., help="Eval run, SUITE or SUITE:vN."),
    against: list[str] = typer.Option(
        [],
        "--against",
        help="Baseline run to compare with (SUITE:vN, a model ref or a stage); repeatable.",
    ),
    out_file: Path | None = typer.Option(
        None, "--out", help="HTML file to write (default ./SUITE-vN-report.html); JSON beside it."
    ),
    open_: bool = typer.Option(False, "--open", help="Open the page in a web browser."),
    as_json: bool = JSON,
) -> None:
    """Write a self-contained HTML report of an eval run (and its JSON) outside the store."""
    from luodi.eval.report import build_report

    res = build_report(STATE.store(), run, against, out_file)
    if as_json:
        emit_json(res)
    else:
        out.print(f"report of {res.run}: {res.path}", highlight=False)
        out.print(f"json: {res.json_path}", highlight=False)
    if open_:
        import webbrowser

        webbrowser.open(Path(res.path).resolve().as_uri())
