"""FastAPI dependencies: the gateway of the app and the admitted caller."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from luodi.serve.auth import Principal
from luodi.serve.gateway import Gateway


def gateway_of(request: Request) -> Gateway:
    """The Gateway of the app serving `request`."""
    return request.app.state.gateway


def admitted(endpoint: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency admitting the caller to `endpoint` (auth, role, rate limit, quota)."""

    async def admit(request: Request) -> Principal:
        return await gateway_of(request).admit(request, endpoint)

    admit.__name__ = f"admit_{endpoint.replace('.', '_')}"
    return admit


def authenticated(request: Request) -> Principal:
    """The caller (auth only: no rate limit), for admin and read-only endpoints."""
    return gateway_of(request).principal(request)
