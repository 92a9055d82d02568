"""The `luodi` command: one Typer sub-app per stage over the core functions."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import typer
from rich.markup import escape

from luodi.cli.render import err
from luodi.cli.state import STATE
from luodi.errors import LuodiError

app = typer.Typer(
    name="luodi",
    help="luodi (落地): raw enterprise documents → datasets → models → governed service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    home: Path | None = typer.Option(
        None, "--home", help="luodi home folder (default: $LUODI_HOME or ./.luodi)."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    STATE.home = home
    STATE.debug = debug


def _register_groups() -> None:
    from luodi.cli import ask, chat, data, demo, deploy, guard, keys, models, train, usage
    from luodi.cli import eval as eval_cli
    from luodi.cli import feedback as feedback_cli
    from luodi.cli import kb as kb_cli
    from luodi.cli import monitor as monitor_cli
    from luodi.cli import pipeline as pipeline_cli

    app.add_typer(data.app, name="data", help="Ingest, clean, split, balance and export datasets.")
    app.add_typer(train.app, name="train", help="Train models: sft, pretrain, cpt; runs.")
    app.add_typer(models.app, name="models", help="Base models and the model registry.")
    app.add_typer(eval_cli.app, name="eval", help="Evaluate: run suites, show, compare, gate.")
    app.add_typer(deploy.app, name="deploy", help="Deployments: apply, show, promote, rollback.")
    app.add_typer(keys.app, name="keys", help="API keys of the gateway: create, list, revoke.")
    app.add_typer(keys.teams_app, name="teams", help="Teams that own keys, deployments and usage.")
    app.add_typer(
        usage.app, name="usage", help="Usage reports, billing CSV, request-log retention."
    )
    app.add_typer(kb_cli.app, name="kb", help="Knowledge bases: create, add, search, rebuild.")
    app.add_typer(guard.app, name="guard", help="Guard policies: show one, check text with it.")
    app.add_typer(feedback_cli.app, name="feedback", help="Feedback → SFT/DPO datasets; stats.")
    app.add_typer(monitor_cli.app, name="monitor", help="Signals, drift, alert rules, report.")
    app.add_typer(pipeline_cli.app, name="pipeline", help="Pipelines: run a YAML DAG, show runs.")
    app.command("serve")(deploy.serve)
    app.command("ask")(ask.ask)  # its docstring is the help
    app.command("demo", help="Run the lifecycle on the bundled sample enterprise.")(demo.demo)
    app.command("chat")(chat.chat)  # its docstring is the help: it lists the chat commands


_register_groups()


def main() -> None:
    """Console entry point: one-line errors (exit 2 bad input, 1 failure) unless --debug."""
    try:
        app()
    except LuodiError as exc:
        if STATE.debug:
            traceback.print_exc()
        err.print(f"[red]error:[/red] {escape(exc.message)}", markup=True, highlight=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if STATE.debug:
            traceback.print_exc()
        else:
            err.print(
                f"[red]error:[/red] unexpected {type(exc).__name__}: {escape(str(exc))} "
                "(run with --debug for the traceback)",
                markup=True,
                highlight=False,
            )
        sys.exit(1)
