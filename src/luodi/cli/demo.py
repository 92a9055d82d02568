"""`luodi demo`: run the sample enterprise through the loop and print what it made."""

from __future__ import annotations

from pathlib import Path

import typer

from luodi.cli.render import emit_json, out, progress_bar, table
from luodi.cli.state import STATE


def demo(
    examples: Path | None = typer.Option(
        None, "--examples", help="The examples/ folder (default: the bundled one)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Run the lifecycle on the bundled sample enterprise (星河精密)."""
    from luodi.demo import run_demo

    with progress_bar(not as_json) as p:
        res = run_demo(STATE.store(), examples, p)
    if as_json:
        emit_json(res)
        return
    rows = [
        [
            s.dataset,
            s.record_kind,
            s.files,
            s.skipped_files,
            s.skipped_rows,
            s.raw_rows,
            s.clean_rows,
            s.pii_masked,
            ", ".join(f"{k}={v}" for k, v in s.splits.items()),
        ]
        for s in res.steps
    ]
    cols = ["dataset", "kind", "files", "bad files", "bad rows", "raw", "clean", "pii", "splits"]
    out.print(table("luodi demo: data stage", cols, rows))
    for s in res.steps:
        out.print(f"report {s.dataset.split(':')[0]}: {s.report_html}")
