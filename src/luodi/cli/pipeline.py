"""`luodi pipeline …`: run a pipeline file, show and list its runs, list the stage kinds
(thin: load, call luodi.pipeline, render)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from luodi.cli.render import emit_json, err, out, progress_bar, table
from luodi.cli.state import STATE
from luodi.errors import BadInputError

app = typer.Typer(no_args_is_help=True)

JSON = typer.Option(False, "--json", help="Print the result as JSON.")
_STYLE = {"ran": "green", "cached": "cyan", "failed": "bold red", "skipped": "yellow"}


def _detail(rec: Any) -> str:
    if rec.error:
        return rec.error.splitlines()[0]
    parts = []
    if rec.cached_from:
        parts.append(f"from run {rec.cached_from[:8]}")
    for k, v in (rec.output.detail if rec.output else {}).items():
        if v is None or v == [] or v == {}:
            continue
        if isinstance(v, float):
            v = f"{v:.4g}"
        elif isinstance(v, dict):
            v = ", ".join(f"{a} {b}" for a, b in v.items())
        parts.append(f"{k} {v}")
    return ", ".join(parts)


def _print_run(res: Any) -> None:
    """The DAG as a table (dependencies first, `needs` naming them), then the record."""
    t = Table(
        title=f"pipeline {res.pipeline}  run {res.run_id[:8]}  {res.status}",
        title_justify="left",
    )
    for c in ("stage (uses)", "needs", "status", "output", "time", "detail"):
        t.add_column(c, overflow="fold")
    for s in res.stages:
        t.add_row(
            Text(f"{s.id} ({s.uses})"),
            Text(", ".join(s.needs)),
            Text(s.status, style=_STYLE.get(s.status, "")),
            Text(s.output.ref if s.output else "-"),
            Text(f"{s.seconds:.1f}s" if s.seconds is not None else "-"),
            Text(_detail(s)),
        )
    out.print(t)
    notes = [f"recorded as pipeline_run {res.record}" if res.record else "not recorded yet"]
    if res.resumed_from:
        notes.append(f"resumed from run {res.resumed_from[:8]}")
    out.print(Text("; ".join(notes)))


@app.command("run")
def run(
    file: Path | None = typer.Argument(
        None, help="Pipeline YAML (may be left out with --resume: the run's own pipeline)."
    ),
    resume: str | None = typer.Option(
        None,
        "--resume",
        help="The failed run to continue (default: the pipeline's newest run, if it failed); "
        "stages that succeeded are reused either way.",
    ),
    as_json: bool = JSON,
) -> None:
    """Run a pipeline: stages in dependency order, unchanged ones reused (exit 1 on a failed
    stage, 2 on a bad pipeline file)."""
    from luodi.pipeline import load_pipeline, pipeline_of_run, run_pipeline

    store = STATE.store()
    if file is None:
        if resume is None:
            raise BadInputError("give the pipeline FILE (or --resume RUN to run a run again)")
        pipe = pipeline_of_run(store, resume)
    else:
        pipe = load_pipeline(file)
    with progress_bar(not as_json) as p:
        res = run_pipeline(store, pipe, p, resume=resume)
    if as_json:
        emit_json(res)
    else:
        _print_run(res)
    if res.status != "succeeded":
        err.print(Text(f"error: {res.error}", style="red"))
        raise typer.Exit(1)


@app.command("show")
def show(
    run: str = typer.Argument(
        ..., help="Run id (or its first 8 characters), pipeline_run NAME:vN, or a pipeline NAME."
    ),
    as_json: bool = JSON,
) -> None:
    """Show a pipeline run: every stage with its status, output version, time and detail."""
    from luodi.pipeline import show_pipeline_run

    res = show_pipeline_run(STATE.store(), run)
    if as_json:
        emit_json(res)
        return
    _print_run(res)


@app.command("list")
def list_(
    name: str | None = typer.Argument(None, help="Only runs of this pipeline."),
    as_json: bool = JSON,
) -> None:
    """List pipeline runs, oldest first."""
    from luodi.pipeline import list_pipeline_runs

    runs = list_pipeline_runs(STATE.store(), name)
    if as_json:
        emit_json(runs)
        return
    rows = [
        [
            r.run_id[:8],
            r.pipeline,
            r.status,
            ", ".join(f"{k} {v}" for k, v in sorted(r.counts.items())),
            r.record or "-",
            f"{r.started_at:%Y-%m-%d %H:%M:%S}",
            r.resumed_from[:8] if r.resumed_from else "",
        ]
        for r in runs
    ]
    columns = ["run", "pipeline", "status", "stages", "record", "started", "resumed"]
    out.print(table(None, columns, rows))


@app.command("stages")
def stages(as_json: bool = JSON) -> None:
    """List the stage kinds a pipeline can use, with their config fields."""
    from luodi.pipeline import STAGES

    kinds = [STAGES.get(n) for n in STAGES.names()]
    data = [
        {
            "uses": k.name,
            "help": k.help,
            "output": k.output_kind,
            "fields": {
                f: (info.description or "")
                for f, info in k.config.model_fields.items()
                if f != "served"
            },
        }
        for k in kinds
    ]
    if as_json:
        emit_json(data)
        return
    rows = [[d["uses"], d["output"], d["help"], ", ".join(d["fields"])] for d in data]
    out.print(table(None, ["uses", "output", "what", "with: fields"], rows))
