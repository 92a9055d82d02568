"""The gateway app: `create_app(deps)` builds a FastAPI app over a store, keys, limits and the
deployments; `build_deps(...)` makes those from settings (what `luodi serve` runs)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from luodi.serve.admin.router import make_router as admin_router
from luodi.serve.chat.router import make_router as chat_router
from luodi.serve.completions.router import make_router as completions_router
from luodi.serve.config import ServeConfig
from luodi.serve.embeddings.router import make_router as embeddings_router
from luodi.serve.errors import install_error_handlers
from luodi.serve.feedback.router import make_router as feedback_router
from luodi.serve.gateway import Gateway, ServeDeps
from luodi.serve.kb.router import UPLOAD_PATH
from luodi.serve.kb.router import make_router as kb_router
from luodi.serve.middleware import GatewayMiddleware
from luodi.serve.models.router import make_router as models_router
from luodi.store import Store


def create_app(deps: ServeDeps) -> FastAPI:
    """The gateway as an ASGI app. The lifespan loads the deployments and starts watching the
    store; on shutdown backends close and buffered records are written."""
    from luodi.monitor.watch import alert_watcher

    gateway = Gateway(deps)
    # alert rules (serve.monitor): a bad rules file stops the server here, before it listens
    watcher = alert_watcher(deps.store, deps.config.monitor, gateway.metrics.registry)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        if watcher is not None:
            await watcher.start()
        try:
            yield
        finally:
            if watcher is not None:
                await watcher.stop()
            await gateway.stop()

    app = FastAPI(
        title="luodi gateway",
        version="1",
        summary="OpenAI-compatible API over luodi's registered models, with keys, quotas, "
        "guardrails, canary releases, metrics and feedback.",
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    app.state.on_error = lambda path, type_: gateway.metrics.errors.labels(path, type_).inc()
    install_error_handlers(app)
    for make in (
        chat_router,
        completions_router,
        embeddings_router,
        models_router,
        feedback_router,
        kb_router,
        admin_router,
    ):
        app.include_router(make())

    @app.get("/healthz", tags=["ops"], summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], summary="Deployments are loaded and served")
    async def readyz(request: Request) -> JSONResponse:
        gw: Gateway = request.app.state.gateway
        body: dict[str, Any] = {
            "ready": gw.ready,
            "deployments": sorted(d.spec.name for d in gw.router.visible(None)),
            "errors": gw.router.errors,
        }
        return JSONResponse(body, status_code=200 if gw.ready else 503)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=Response)
    async def metrics(request: Request) -> Response:
        gw: Gateway = request.app.state.gateway
        return Response(gw.metrics.render(), media_type="text/plain; version=0.0.4")

    app.add_middleware(
        GatewayMiddleware,
        max_body_bytes=deps.config.limits.max_body_bytes,
        max_upload_bytes=deps.config.limits.max_upload_bytes,
        upload_path=UPLOAD_PATH,
    )
    return app


def build_deps(store: Store, config: ServeConfig) -> ServeDeps:
    """The production wiring: keys and usage in the store, limits in memory or Redis, the
    registered backends and guard policies."""
    from luodi.guard import load_policy
    from luodi.serve.auth import KeyStore
    from luodi.serve.backends import open_backend
    from luodi.serve.limits import Quotas, make_limiter
    from luodi.serve.usage import UsageRecorder

    recorder = UsageRecorder(store, retention_days=config.log_retention_days)
    return ServeDeps(
        store=store,
        config=config,
        keys=KeyStore(store),
        limiter=make_limiter(config.redis_url),
        quotas=Quotas(store, recorder),
        recorder=recorder,
        opener=open_backend,
        policy_loader=load_policy,
    )
