"""The admin API. Admins act on every team; developers read their own team's usage and
deployments; users have no admin access. Each handler is one call into the core."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from luodi.serve import deployments as D
from luodi.serve.auth import Principal, authorize
from luodi.serve.deps import authenticated, gateway_of
from luodi.serve.usage import list_feedback, parse_period, purge_request_logs, usage_report


class TeamCreate(BaseModel):
    """A new team."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Team name.")


class KeyCreate(BaseModel):
    """A new API key."""

    model_config = ConfigDict(extra="forbid")
    team: str = Field(description="The team it belongs to (must exist).")
    role: str = Field(default="user", description="admin, developer or user.")
    name: str = Field(description="Who or what uses it.")
    endpoints: list[str] | None = Field(default=None, description="Allowed endpoints.")
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute.")
    tokens_per_day: int | None = Field(default=None, ge=1, description="Tokens per UTC day.")
    tokens_per_month: int | None = Field(default=None, ge=1, description="Tokens per month.")


class PromoteBody(BaseModel):
    """Which route to keep."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(default=None, description="Default: the canary.")


class RollbackBody(BaseModel):
    """Why."""

    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, description="Recorded with the new version.")


def _team_scope(principal: Principal, team: str | None) -> str | None:
    """The team a read is limited to: a non-admin always reads only its own."""
    return team if principal.role == "admin" else principal.team


def make_router() -> APIRouter:
    router = APIRouter(prefix="/admin", tags=["admin"])

    # -- teams and keys ------------------------------------------------------------------
    @router.get("/teams", summary="List teams")
    async def list_teams(request: Request, p: Principal = Depends(authenticated)) -> Any:
        authorize(p, "teams.read")
        teams = await asyncio.to_thread(gateway_of(request).deps.keys.list_teams)
        return {"data": [t.model_dump(mode="json") for t in teams]}

    @router.post("/teams", summary="Create a team", status_code=201)
    async def create_team(
        body: TeamCreate, request: Request, p: Principal = Depends(authenticated)
    ) -> Any:
        authorize(p, "teams.write")
        keys = gateway_of(request).deps.keys
        team = await asyncio.to_thread(keys.create_team, body.name, p.name)
        return team.model_dump(mode="json")

    @router.get("/keys", summary="List API keys (never their secrets)")
    async def list_keys(
        request: Request, team: str | None = None, p: Principal = Depends(authenticated)
    ) -> Any:
        authorize(p, "keys.read")
        keys = await asyncio.to_thread(gateway_of(request).deps.keys.list_keys, team)
        return {"data": [k.model_dump(mode="json") for k in keys]}

    @router.post("/keys", summary="Create an API key (the secret is shown once)", status_code=201)
    async def create_key(
        body: KeyCreate, request: Request, p: Principal = Depends(authenticated)
    ) -> Any:
        authorize(p, "keys.write")
        keys = gateway_of(request).deps.keys
        principal, secret = await asyncio.to_thread(keys.create_key, **body.model_dump(), by=p.name)
        return {"key": secret, **principal.model_dump(mode="json")}

    @router.delete("/keys/{key_id}", summary="Revoke an API key")
    async def revoke_key(
        key_id: str, request: Request, p: Principal = Depends(authenticated)
    ) -> Any:
        authorize(p, "keys.write")
        info = await asyncio.to_thread(gateway_of(request).deps.keys.revoke, key_id)
        return info.model_dump(mode="json")

    # -- deployments ---------------------------------------------------------------------
    @router.get("/deployments", summary="List deployments")
    async def list_deployments(request: Request, p: Principal = Depends(authenticated)) -> Any:
        authorize(p, "deployments.read")
        team = _team_scope(p, None)
        infos = await asyncio.to_thread(D.list_current, gateway_of(request).store, team)
        gw = gateway_of(request)
        live = {d.spec.name: d.info.ref for d in gw.router.visible(None)}
        return {
            # `serving`: the version this gateway serves now (it picks up a newer one within
            # its reload interval, once the version's models have loaded)
            "data": [i.model_dump(mode="json") | {"serving": live.get(i.spec.name)} for i in infos],
            "errors": {
                k: v for k, v in gw.router.errors.items() if team in (None, _team_of(infos, k))
            },
        }

    @router.get("/deployments/{name}", summary="A deployment and its history")
    async def show_deployment(
        name: str, request: Request, p: Principal = Depends(authenticated)
    ) -> Any:
        authorize(p, "deployments.read")
        history = await asyncio.to_thread(D.history, gateway_of(request).store, name)
        authorize(p, "deployments.read", history[-1].spec.team)
        return {"current": history[-1].model_dump(mode="json"),
                "history": [h.model_dump(mode="json") for h in history]}  # fmt: skip

    @router.post("/deployments", summary="Apply a deployment (hot swap)")
    async def apply_deployment(
        spec: D.DeploymentSpec, request: Request, p: Principal = Depends(authenticated)
    ) -> Any:
        authorize(p, "deployments.write")
        gw = gateway_of(request)
        info = await asyncio.to_thread(D.apply, gw.store, spec)
        await gw.router.refresh()
        return info.model_dump(mode="json")

    @router.post("/deployments/{name}/promote", summary="Send all traffic to one route")
    async def promote(
        name: str, body: PromoteBody, request: Request, p: Principal = Depends(authenticated)
    ) -> Any:
        authorize(p, "deployments.write")
        gw = gateway_of(request)
        info = await asyncio.to_thread(D.promote, gw.store, name, body.model)
        await gw.router.refresh()
        return info.model_dump(mode="json")

    @router.post("/deployments/{name}/rollback", summary="Serve the previous version again")
    async def rollback(
        name: str, body: RollbackBody, request: Request, p: Principal = Depends(authenticated)
    ) -> Any:
        authorize(p, "deployments.write")
        gw = gateway_of(request)
        info = await asyncio.to_thread(D.rollback, gw.store, name, body.reason)
        await gw.router.refresh()
        return info.model_dump(mode="json")

    # -- usage, feedback, logs -------------------------------------------------------------
    @router.get("/usage", summary="Usage report")
    async def usage(
        request: Request,
        by: str = Query("key", description="key, model, team, deployment or day."),
        period: str = Query("30d", description="7d, 24h, 2026-11, 2026-11-05 or A..B."),
        team: str | None = Query(None, description="Only this team (admins)."),
        p: Principal = Depends(authenticated),
    ) -> Any:
        authorize(p, "usage.read")
        since, until = parse_period(period)
        gw = gateway_of(request)
        await asyncio.to_thread(gw.deps.recorder.flush)
        report = await asyncio.to_thread(
            usage_report, gw.store, by, since, until, _team_scope(p, team)
        )
        return report.model_dump(mode="json")

    @router.get("/feedback", summary="Feedback received")
    async def feedback(
        request: Request,
        period: str = Query("30d", description="7d, 24h, 2026-11, 2026-11-05 or A..B."),
        p: Principal = Depends(authenticated),
    ) -> Any:
        authorize(p, "feedback.read")
        since, until = parse_period(period)
        items = await asyncio.to_thread(list_feedback, gateway_of(request).store, since, until)
        return {"data": [i.model_dump(mode="json") for i in items]}

    @router.post("/logs/purge", summary="Delete request logs older than N days")
    async def purge(
        request: Request,
        older_than_days: int = Query(..., ge=1, le=36500, description="Age in days."),
        p: Principal = Depends(authenticated),
    ) -> Any:
        authorize(p, "logs.purge")
        n = await asyncio.to_thread(purge_request_logs, gateway_of(request).store, older_than_days)
        return {"deleted": n}

    return router


def _team_of(infos: list[D.DeploymentInfo], name: str) -> str | None:
    return next((i.spec.team for i in infos if i.spec.name == name), None)
