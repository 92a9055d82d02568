"""`luodi demo`: run the sample enterprise through the loop and print what it made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from luodi.cli.render import emit_json, out, progress_bar, table, validated
from luodi.cli.state import STATE


def _hold(run: Any) -> None:
    """--keep-serving: print how to call the gateway, then wait for Ctrl-C."""
    import time

    from luodi.demo.serving import DEPLOYMENT

    out.print(f"\nthe gateway is serving on {run.url}/v1 (Ctrl-C stops it)")
    out.print(f"API key (role user): {run.user_key}")
    out.print(
        f"curl {run.url}/v1/chat/completions -H 'Authorization: Bearer {run.user_key}' "
        f'-H \'Content-Type: application/json\' -d \'{{"model": "{DEPLOYMENT}", '
        '"messages": [{"role": "user", "content": "试用期多久？"}]}\'',
        soft_wrap=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        out.print("stopping the gateway")


def demo(
    examples: Path | None = typer.Option(
        None, "--examples", help="The examples/ folder (default: the bundled one)."
    ),
    loop: bool = typer.Option(
        True,
        "--loop/--data-only",
        help="--data-only: the data stage and the knowledge base, no training or serving.",
    ),
    base: str = typer.Option("default", "--base", help="Base model (default: SmolLM2-135M)."),
    embedder: str = typer.Option("e5", "--embedder", help="Knowledge-base embedder."),
    steps: int = typer.Option(30, "--steps", help="LoRA steps per training run."),
    users: int = typer.Option(6, "--users", help="Simulated users (two answers each)."),
    keep_serving: bool = typer.Option(
        False, "--keep-serving", help="Leave the gateway up at the end (prints a curl example)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Run the whole lifecycle on the bundled sample enterprise (星河精密)."""
    from luodi.demo import DemoConfig, run_demo

    cfg = validated(
        DemoConfig, base=base, embedder=embedder, train_steps=steps, users=users, loop=loop
    )
    with progress_bar(not as_json) as p:
        res = run_demo(STATE.store(), cfg, examples, p, hold=_hold if keep_serving else None)
    if as_json:
        emit_json(res)
        return
    _print(res)


def _print(res: Any) -> None:
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
    out.print(table("data stage", cols, rows))
    out.print(f"knowledge base: {res.knowledge_base}")
    for a in res.answers:
        rating = f" {a.stars}★" if a.stars else ""
        fixed = " (corrected)" if a.corrected else ""
        out.print(f"\n[bold]Q[/bold] {a.question}\n[bold]A[/bold] ({a.served_by}{rating}{fixed}) ")
        out.print(a.answer, markup=False, highlight=False)
        for c in a.citations:
            out.print(f"   ↳ {c}", markup=False)
    if res.feedback:
        f = res.feedback
        out.print(
            f"\nfeedback: {f.rated} ratings, {f.corrections} corrections → SFT {f.sft_dataset}, "
            f"DPO {f.dpo_dataset}; v2 trained on {f.training_mix}"
        )
    if res.versions:
        vrows = [
            [
                v.model,
                v.trained_on or "-",
                f"{v.rouge_l:.3f}",
                f"{v.token_f1:.3f}",
                f"{v.chrf:.1f}",
                v.gate or "-",
                v.stage or "-",
            ]
            for v in res.versions
        ]
        cols = ["version", "trained on", "rouge_l", "token_f1", "chrF", "gate", "stage"]
        out.print(table("every version on the held-out questions", cols, vrows))
    if res.canary:
        out.print(f"canary: {res.canary} sends 20% of traffic to the new version")
    for what, path in res.reports.items():
        out.print(f"report {what}: {path}")
    out.print(f"done in {res.seconds:.0f} s")
