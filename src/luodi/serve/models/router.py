"""GET /v1/models and /v1/models/{name}: the deployments the caller's team may call."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from luodi.serve.auth import Principal, authorize
from luodi.serve.deps import authenticated, gateway_of
from luodi.serve.routing import LiveDeployment


def _card(dep: LiveDeployment) -> dict[str, Any]:
    return {
        "id": dep.spec.name,
        "object": "model",
        "created": int(dep.info_created()),
        "owned_by": dep.spec.team,
        "luodi": {
            "deployment": dep.info.ref,
            "routes": [{"model_version": r.served, "weight": r.route.weight} for r in dep.routes],
            "capabilities": sorted(set().union(*(r.backend.capabilities for r in dep.routes))),
        },
    }


def make_router() -> APIRouter:
    router = APIRouter(tags=["models"])

    @router.get("/v1/models", summary="List the models you can call")
    async def list_models(
        request: Request, principal: Principal = Depends(authenticated)
    ) -> dict[str, Any]:
        authorize(principal, "models")
        team = None if principal.role == "admin" else principal.team
        deps = sorted(gateway_of(request).router.visible(team), key=lambda d: d.spec.name)
        return {"object": "list", "data": [_card(d) for d in deps]}

    @router.get("/v1/models/{name}", summary="Describe one model")
    async def get_model(
        name: str, request: Request, principal: Principal = Depends(authenticated)
    ) -> dict[str, Any]:
        authorize(principal, "models")
        team = None if principal.role == "admin" else principal.team
        return _card(gateway_of(request).router.get(name, team))

    return router
