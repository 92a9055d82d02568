"""`luodi serve` and `luodi deploy …`: run the gateway; apply, show, promote, roll back
deployments (a running gateway picks changes up without a restart)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from luodi.cli.render import emit_json, out, table
from luodi.cli.state import STATE

app = typer.Typer(no_args_is_help=True)

JSON = typer.Option(False, "--json", help="Print the result as JSON.")


_ROLLBACKS = ("rollback", "auto-rollback")


def _guard_note(spec) -> str:  # noqa: ANN001 - DeploymentSpec
    """The canary guard in a few words: off, idle (one live route) or what it watches."""
    from luodi.serve.canary import roles

    g = spec.canary_guard
    if not g.enabled:
        return "off"
    if roles(spec) is None:
        return "on (idle: one live route)"
    return f"on ({', '.join(g.signals)}; alpha {g.alpha:g}, last {g.window} requests)"


def _print(info, as_json: bool) -> None:  # noqa: ANN001 - DeploymentInfo
    if as_json:
        emit_json(info)
        return
    spec = info.spec
    note = "" if info.changed else "  (unchanged)"
    out.print(f"{info.ref}  team {spec.team}  {info.action}{note}")
    if info.action in _ROLLBACKS:  # why traffic moved back is the first thing to read
        when = info.created_at[:19].replace("T", " ")
        who = "the canary guard" if info.action == "auto-rollback" else info.created_by
        out.print(
            f"  [bold red]{info.action}[/] at {when} UTC by {escape(who)}: "
            f"{escape(info.reason or '-')}"
        )
    elif info.reason:
        out.print(f"  reason: {info.reason}")
    total = sum(r.weight for r in spec.routes)
    rows = [[r.served or r.model, r.engine, f"{100 * r.weight / total:.1f}%"] for r in spec.routes]
    out.print(table(None, ["model version", "engine", "traffic"], rows))
    extras = {
        "sticky": spec.sticky,
        "guard": spec.guard or "-",
        "knowledge bases": ", ".join(spec.knowledge_bases) or "-",
        "canary guard": _guard_note(spec),
    }
    out.print("  " + "  ".join(f"{k}: {v}" for k, v in extras.items()))


@app.command("apply")
def apply_(
    file: Path = typer.Argument(..., help="deploy.yaml (its `deployments:` list) or one spec."),
    as_json: bool = JSON,
) -> None:
    """Register the deployments in FILE as new versions (unchanged ones stay as they are)."""
    from luodi.serve import deployments as D
    from luodi.serve.config import load_deploy_file

    specs = load_deploy_file(file).deployments
    if not specs:
        from luodi.errors import BadInputError

        raise BadInputError(f"{file} holds no deployments")
    infos = [D.apply(STATE.store(), s) for s in specs]
    if as_json:
        emit_json(infos)
        return
    for info in infos:
        _print(info, False)


@app.command("show")
def show(
    name: str | None = typer.Argument(None, help="A deployment (default: list them all)."),
    history: bool = typer.Option(False, "--history", help="Every version, oldest first."),
    as_json: bool = JSON,
) -> None:
    """Show what a deployment serves (or list every deployment)."""
    from luodi.serve import deployments as D

    store = STATE.store()
    if name is None:
        infos = D.list_current(store)
        if as_json:
            emit_json(infos)
            return
        rows = [
            [
                i.ref,
                i.spec.team,
                ", ".join(f"{r.served or r.model} ({r.weight:g})" for r in i.spec.routes),
                i.action + (f": {i.reason}" if i.action in _ROLLBACKS and i.reason else ""),
            ]
            for i in infos
        ]
        out.print(table(None, ["deployment", "team", "routes (weight)", "last action"], rows))
        return
    infos = D.history(store, name) if history else [D.current(store, name)]
    if as_json:
        emit_json(infos if history else infos[0])
        return
    for info in infos:
        _print(info, False)


@app.command("promote")
def promote(
    name: str = typer.Argument(..., help="The deployment."),
    model: str | None = typer.Option(
        None, "--model", help="The route to keep (default: the canary, the smallest weight)."
    ),
    as_json: bool = JSON,
) -> None:
    """Send all of a deployment's traffic to one route (finish a canary release)."""
    from luodi.serve import deployments as D

    _print(D.promote(STATE.store(), name, model), as_json)


@app.command("rollback")
def rollback(
    name: str = typer.Argument(..., help="The deployment."),
    reason: str | None = typer.Option(None, "--reason", help="Why, for the record."),
    as_json: bool = JSON,
) -> None:
    """Serve the deployment's previous version again (recorded as a new version)."""
    from luodi.serve import deployments as D

    _print(D.rollback(STATE.store(), name, reason), as_json)


def serve(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="deploy.yaml: `serve:` settings and `deployments:`."
    ),
    host: str | None = typer.Option(None, "--host", help="Address (default from the config)."),
    port: int | None = typer.Option(None, "--port", help="Port (default from the config)."),
) -> None:
    """Run the OpenAI-compatible gateway over the store's deployments."""
    import uvicorn

    from luodi.serve import deployments as D
    from luodi.serve.app import build_deps, create_app
    from luodi.serve.config import DeployFile, load_deploy_file

    spec = load_deploy_file(config) if config else DeployFile()
    cfg = spec.serve.model_copy(
        update={k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    )
    store = STATE.store()
    for d in spec.deployments:
        info = D.apply(store, d)
        out.print(f"deployment {info.ref}{'' if info.changed else ' (unchanged)'}")
    if not D.list_current(store):
        out.print("no deployments yet: add one with `luodi deploy apply deploy.yaml`")
    app = create_app(build_deps(store, cfg))
    out.print(f"serving on http://{cfg.host}:{cfg.port}/v1  (auth {'on' if cfg.auth else 'OFF'})")
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False)
