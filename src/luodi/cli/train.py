"""`luodi train …`: training stages and runs (thin: build the config, call the runner, render)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from luodi.cli.render import emit_json, out, progress_bar, table
from luodi.cli.state import STATE
from luodi.errors import BadInputError

app = typer.Typer(no_args_is_help=True)

STAGE_HELP = {
    "sft": "Supervised fine-tuning on a qa dataset (loss on assistant tokens only).",
    "pretrain": "Pretrain from scratch (tiny:<preset>) on a text dataset, sequences packed.",
    "cpt": "Continued pretraining of an existing base model on a text dataset.",
    "dpo": "Direct preference optimisation on a preference dataset (prompt/chosen/rejected) "
    "against the base as reference.",
    "reward": "Train a reward model (one-score head) on a preference dataset: chosen answers "
    "score above rejected.",
    "classify": "Train a sequence-classification head on a labeled dataset; reports validation "
    "accuracy.",
    "distill": "Distil a teacher (--set teacher=MODEL) into the base on a text or qa dataset: "
    "KL to the teacher's logits + CE.",
}


def _overrides(sets: list[str]) -> dict[str, Any]:
    """`--set key=value` pairs, values parsed as YAML scalars/lists (lr=2e-4, modules=[q_proj])."""
    import yaml

    out_: dict[str, Any] = {}
    for s in sets:
        key, sep, value = s.partition("=")
        if not sep or not key.strip():
            raise BadInputError(f"--set takes FIELD=VALUE (e.g. lora_r=16), got {s!r}")
        out_[key.strip()] = yaml.safe_load(value)
    return out_


def _stage_command(stage: str):  # noqa: ANN202 - a Typer command factory
    def command(
        dataset: str | None = typer.Option(None, "--dataset", "-d", help="NAME or NAME:vN."),
        base: str | None = typer.Option(
            None, "--base", help="Base model: default, tiny:<preset>, a registered base, a path."
        ),
        name: str | None = typer.Option(None, "--name", help="Model name (default from base)."),
        method: str | None = typer.Option(
            None, "--method", help="full, lora, lora_plus, dora, prefix, prompt, ia3, qlora."
        ),
        config: Path | None = typer.Option(None, "--config", help="TrainConfig YAML."),
        max_steps: int | None = typer.Option(None, "--max-steps"),
        epochs: float | None = typer.Option(None, "--epochs"),
        lr: float | None = typer.Option(None, "--lr", help="Learning rate."),
        batch_size: int | None = typer.Option(None, "--batch-size"),
        cutoff_len: int | None = typer.Option(None, "--cutoff-len"),
        compute: str | None = typer.Option(None, "--compute", help="fp32, bf16, fp16 (GPU)."),
        resume: bool = typer.Option(False, "--resume", help="Continue the last interrupted run."),
        launcher: str | None = typer.Option(
            None, "--launcher", help="local or torchrun (DDP over --nproc processes)."
        ),
        nproc: int | None = typer.Option(None, "--nproc", help="Processes for torchrun."),
        sets: list[str] = typer.Option(
            [], "--set", help="Any TrainConfig field, FIELD=VALUE (repeatable)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        from luodi.train.config import load_train_config
        from luodi.train.runner import run_train

        flags = {
            "stage": stage,
            "dataset": dataset,
            "base": base,
            "name": name,
            "method": method,
            "max_steps": max_steps,
            "epochs": epochs,
            "learning_rate": lr,
            "batch_size": batch_size,
            "cutoff_len": cutoff_len,
            "compute": compute,
            "resume": resume or None,
            "launcher": launcher,
            "nproc": nproc,
        }
        cfg = load_train_config(config, {**_overrides(sets), **flags})
        with progress_bar(not as_json) as p:
            res = run_train(STATE.store(), cfg, p)
        if as_json:
            emit_json(res)
            return
        out.print(
            table(
                None,
                ["model", "run", "method", "steps", "train loss", "eval loss", "tokens/s"],
                [
                    [
                        res.model,
                        res.run_id[:8],
                        res.method,
                        res.steps,
                        _fmt(res.train_loss),
                        _fmt(res.eval_loss),
                        _fmt(res.tokens_per_s, 0),
                    ]
                ],
            )
        )
        out.print(
            f"trainable {res.trainable_parameters:,} of {res.total_parameters:,} parameters; "
            f"saved to {res.path}"
        )

    command.__doc__ = STAGE_HELP[stage]
    return command


def _fmt(v: float | None, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


for _stage in STAGE_HELP:
    app.command(_stage, help=STAGE_HELP[_stage])(_stage_command(_stage))


@app.command("runs")
def runs_(
    name: str | None = typer.Argument(None, help="Only runs of this model name."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List training runs with their status."""
    from luodi.store.runs import Runs

    runs = Runs(STATE.store()).list(kind="train", name=name)
    if as_json:
        emit_json(runs)
        return
    rows = [
        [
            r.short_id,
            r.name,
            r.status,
            r.artifact_ref or "",
            f"{r.started_at:%Y-%m-%d %H:%M}",
            r.error or "",
        ]
        for r in runs
    ]
    out.print(table(None, ["run", "model", "status", "registered", "started", "error"], rows))


@app.command()
def show(
    run: str = typer.Argument(..., help="Run id (or its first 8 characters)."),
    plot: Path | None = typer.Option(None, "--plot", help="Loss-curve PNG (default beside run)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show a run (config, status, final metrics) and write its loss-curve PNG."""
    from luodi.store.runs import Runs
    from luodi.train.plots import loss_curve

    runs = Runs(STATE.store())
    info = runs.get(run)
    series = runs.metrics(info.id)
    png = plot or STATE.settings().home / "runs" / info.id / "loss.png"
    wrote = loss_curve(series, png, title=f"{info.name} run {info.id[:8]}")
    if as_json:
        emit_json(
            {
                "run": info.model_dump(mode="json"),
                "metrics": {k: v for k, v in series.items()},
                "plot": str(png) if wrote else None,
            }
        )
        return
    last = {k: v[-1][1] for k, v in series.items() if v}
    rows = [
        ["status", info.status],
        ["model", info.artifact_ref or info.name],
        ["started", f"{info.started_at:%Y-%m-%d %H:%M:%S}"],
        ["ended", f"{info.ended_at:%Y-%m-%d %H:%M:%S}" if info.ended_at else "-"],
        ["checkpoints", info.checkpoint_dir or "-"],
    ]
    if info.error:
        rows.append(["error", info.error])
    rows += [[k, f"{v:.6g}"] for k, v in sorted(last.items())]
    out.print(table(f"run {info.id}", ["field", "value"], rows))
    if wrote:
        out.print(f"loss curve: {png}")


@app.command()
def sweep(
    config: Path = typer.Option(..., "--config", help="Sweep YAML (grid or random search)."),
    sets: list[str] = typer.Option(
        [], "--set", help="A TrainConfig field for every trial, FIELD=VALUE (repeatable)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Grid or random search over TrainConfig fields; registers the best trial under the name.

    Trials are versions of NAME-trial; the best is copied as the next version of NAME with
    its trial as lineage parent.
    """
    from luodi.train.sweep import load_sweep_config, run_sweep

    cfg = load_sweep_config(config)
    if sets:
        cfg = cfg.model_copy(update={"train": {**cfg.train, **_overrides(sets)}})
    with progress_bar(not as_json) as p:
        res = run_sweep(STATE.store(), cfg, p)
    if as_json:
        emit_json(res)
        return
    fields = list(res.trials[0].params) if res.trials else []
    errors = any(t.error for t in res.trials)
    rows = [
        [
            ("* " if t.index == res.best.index else "  ") + str(t.index),
            *(t.params.get(f) for f in fields),
            "ok" if t.status == "succeeded" else t.status,
            _fmt(t.metric),
            t.model or "-",
            *([t.error or ""] if errors else []),
        ]
        for t in res.trials
    ]
    columns = ["trial", *fields, "status", res.metric, "model", *(["error"] if errors else [])]
    out.print(table(f"sweep {res.run_id[:8]} ({res.mode} {res.metric})", columns, rows))
    out.print(
        f"best: trial {res.best.index} ({res.metric} {_fmt(res.best.metric)}) registered as "
        f"{res.model}"
    )
