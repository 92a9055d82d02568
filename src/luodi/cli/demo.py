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
    train: bool = typer.Option(
        True, "--train/--no-train", help="Fine-tune SmolLM2 on the FAQ (about 2 minutes)."
    ),
    steps: int = typer.Option(30, "--steps", help="LoRA steps when training."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Run the lifecycle on the bundled sample enterprise (星河精密)."""
    from luodi.demo import run_demo

    with progress_bar(not as_json) as p:
        res = run_demo(STATE.store(), examples, p, train=train, train_steps=steps)
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
    if res.model:
        m = res.model
        loss = f"{m.eval_loss:.3f}" if m.eval_loss is not None else "-"
        out.print(
            f"trained {m.model} ({m.stage}) from {m.base}: {m.steps} LoRA steps, "
            f"validation loss {loss}; try: luodi chat {m.model}"
        )
