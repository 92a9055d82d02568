"""`luodi keys …` and `luodi teams …`: API keys of the gateway (create, list, revoke) and the
teams they belong to. Run on a machine with access to the store; no gateway is needed."""

from __future__ import annotations

import typer

from luodi.cli.render import emit_json, err, out, table
from luodi.cli.state import STATE

app = typer.Typer(no_args_is_help=True)
teams_app = typer.Typer(no_args_is_help=True)

JSON = typer.Option(False, "--json", help="Print the result as JSON.")


def _keys():  # noqa: ANN202 - a KeyStore, imported lazily to keep `luodi --help` fast
    from luodi.serve.auth import KeyStore

    return KeyStore(STATE.store())


def _when(dt) -> str:  # noqa: ANN001 - datetime | None
    return "-" if dt is None else f"{dt:%Y-%m-%d %H:%M}"


def _limits(k) -> str:  # noqa: ANN001 - KeyInfo
    parts = [
        f"{v} {unit}"
        for v, unit in (
            (k.rpm, "rpm"),
            (k.tokens_per_day, "tok/day"),
            (k.tokens_per_month, "tok/mo"),
        )
        if v is not None
    ]
    return ", ".join(parts) or "-"


@app.command("create")
def create(
    team: str = typer.Option(..., "--team", help="The team the key belongs to."),
    name: str = typer.Option(..., "--name", help="Who or what uses the key, e.g. 'faq web app'."),
    role: str = typer.Option(
        "user",
        "--role",
        help="user (call models, give feedback), developer (also read the team's usage and "
        "deployments) or admin (everything, every team).",
    ),
    rpm: int | None = typer.Option(None, "--rpm", help="Requests per minute (default: no limit)."),
    tokens_per_day: int | None = typer.Option(
        None, "--tokens-per-day", help="Prompt + completion tokens per UTC day."
    ),
    tokens_per_month: int | None = typer.Option(
        None, "--tokens-per-month", help="Prompt + completion tokens per UTC month."
    ),
    endpoint: list[str] | None = typer.Option(
        None,
        "--endpoint",
        help="Limit the key to this endpoint (repeatable), e.g. chat.completions, embeddings.",
    ),
    as_json: bool = JSON,
) -> None:
    """Create an API key and print it. The key is shown only now: store it safely."""
    p, secret = _keys().create_key(
        team,
        role,
        name,
        endpoints=endpoint or None,
        rpm=rpm,
        tokens_per_day=tokens_per_day,
        tokens_per_month=tokens_per_month,
    )
    if as_json:
        emit_json({"key": secret, **p.model_dump(mode="json")})
        return
    out.print(secret, highlight=False)
    err.print(
        f"created key {p.key_id} ({p.role}, team {p.team}); it is shown only once: "
        "store it now (Authorization: Bearer <key>)",
        highlight=False,
    )


@app.command("list")
def list_(
    team: str | None = typer.Option(None, "--team", help="Only this team's keys."),
    active: bool = typer.Option(False, "--active", help="Hide revoked keys."),
    as_json: bool = JSON,
) -> None:
    """List API keys (ids, roles, limits, last use; never secrets)."""
    infos = _keys().list_keys(team, include_revoked=not active)
    if as_json:
        emit_json(infos)
        return
    rows = [
        [
            i.key_id,
            i.team,
            i.role,
            i.name,
            _limits(i),
            ",".join(i.endpoints) if i.endpoints else "all",
            _when(i.last_used_at),
            "revoked " + _when(i.revoked_at) if i.revoked_at else "active",
        ]
        for i in infos
    ]
    cols = ["key", "team", "role", "name", "limits", "endpoints", "last used", "status"]
    out.print(table(None, cols, rows))


@app.command("revoke")
def revoke(
    key_id: str = typer.Argument(..., help="The key id (the 8 characters after `ld-`)."),
    as_json: bool = JSON,
) -> None:
    """Revoke a key. Running gateways refuse it within a few seconds."""
    info = _keys().revoke(key_id)
    if as_json:
        emit_json(info)
        return
    out.print(f"revoked {info.key_id} ({info.name}, team {info.team}) at {_when(info.revoked_at)}")


@teams_app.command("create")
def team_create(
    name: str = typer.Argument(..., help="Team name (letters, digits, '_', '.', '-')."),
    as_json: bool = JSON,
) -> None:
    """Create a team (keys, deployments and usage belong to one)."""
    info = _keys().create_team(name)
    if as_json:
        emit_json(info)
        return
    out.print(f"created team {info.name}")


@teams_app.command("list")
def team_list(as_json: bool = JSON) -> None:
    """List teams with their number of active keys."""
    infos = _keys().list_teams()
    if as_json:
        emit_json(infos)
        return
    rows = [[t.name, t.active_keys, _when(t.created_at), t.created_by] for t in infos]
    out.print(table(None, ["team", "active keys", "created", "by"], rows))
