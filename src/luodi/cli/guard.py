"""`luodi guard …`: look at a guard policy and try it on text before a deployment uses it."""

from __future__ import annotations

import sys

import typer

from luodi.cli.render import emit_json, out, table

app = typer.Typer(no_args_is_help=True)

POLICY = typer.Option("default", "--policy", "-p", help="'default' or a policy YAML path.")


@app.command("check")
def check(
    text: str | None = typer.Argument(None, help="The text (default: read standard input)."),
    policy: str = POLICY,
    output: bool = typer.Option(
        False, "--output", help="Check as a model reply (output rules) instead of a request."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as JSON."),
) -> None:
    """Print the verdict of POLICY on TEXT; exit 1 when it would be blocked."""
    from luodi.guard import check_text, load_policy

    body = text if text is not None else sys.stdin.read()
    verdict = check_text(load_policy(policy), body, "output" if output else "input")
    if as_json:
        emit_json(verdict.to_log() | {"text": verdict.text if verdict.action == "mask" else None})
    else:
        out.print(f"{verdict.action}  {', '.join(verdict.categories) or '-'}")
        rows = [[m.rule, m.category, f"{m.start}-{m.end}", m.term or "-"] for m in verdict.matches]
        if rows:
            out.print(table(None, ["rule", "category", "span", "term"], rows))
        if verdict.action == "mask":
            out.print(verdict.text, highlight=False)
    if verdict.action == "block":
        raise typer.Exit(1)


@app.command("show")
def show(policy: str = typer.Argument("default", help="'default' or a policy YAML path.")) -> None:
    """What a policy loads: rules, lexicons and their sizes, patterns, refusal."""
    from luodi.guard import load_policy

    emit_json(load_policy(policy).describe())
