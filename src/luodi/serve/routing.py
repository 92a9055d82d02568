"""Live deployments in a running gateway: backends, traffic split, hot swap.

`Router` keeps the deployments being served as one immutable mapping and replaces the whole
mapping when the store holds a newer version (hot swap): a request takes its deployment and
backend at its start and keeps them to its end, so a swap never drops an in-flight request.
Backends are shared by every route that serves the same model with the same settings and are
closed once no deployment uses them and their last in-flight request has finished.

Traffic split: a route is picked from a point in [0, 1) derived from a hash of the deployment
name and the sticky id (the API key or the request's `user`), so the same caller stays on the
same route while the weights stay the same, and callers spread over routes by weight.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from luodi.errors import NotFoundError
from luodi.serve import deployments as D
from luodi.serve.backends.base import Backend, BackendSpec
from luodi.store import Store

log = logging.getLogger("luodi.serve")

BackendOpener = Callable[[Store, BackendSpec], Backend]


def bucket(deployment: str, sticky_id: str) -> float:
    """A stable point in [0, 1) for (deployment, caller)."""
    digest = hashlib.sha256(f"{deployment}\x00{sticky_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class _Pooled:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.users = 0  # deployments currently routing to it
        self.inflight = 0


@dataclass
class LiveRoute:
    """A route of a served deployment with its open backend."""

    route: D.Route
    pooled: _Pooled

    @property
    def backend(self) -> Backend:
        return self.pooled.backend

    @property
    def served(self) -> str:
        return self.route.served or self.route.model

    def lease(self) -> _Lease:
        """Mark a request as using this route's backend until the lease ends (a retired
        backend is closed only when its last lease ended)."""
        return _Lease(self.pooled)


@dataclass
class LiveDeployment:
    """A deployment version being served."""

    info: D.DeploymentInfo
    routes: list[LiveRoute]
    guard: Any = None
    tools: Any = None  # luodi.serve.tools.box.ToolBox: its server-side tools, open while served
    _cum: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        total = sum(r.route.weight for r in self.routes)
        self._cum = [w / total for w in accumulate(r.route.weight for r in self.routes)]

    @property
    def spec(self) -> D.DeploymentSpec:
        return self.info.spec

    def info_created(self) -> float:
        """When this deployment version was made, as a Unix timestamp."""
        from datetime import datetime

        return datetime.fromisoformat(self.info.created_at).timestamp()

    def pick(self, sticky_id: str | None) -> LiveRoute:
        """The route for a caller: by weight, stable per sticky id (random without one)."""
        if len(self.routes) == 1:
            return self.routes[0]
        u = (
            bucket(self.spec.name, sticky_id)
            if sticky_id is not None and self.spec.sticky != "none"
            else random.random()
        )
        i = min(bisect_right(self._cum, u), len(self.routes) - 1)
        while self.routes[i].route.weight == 0:  # never land on a drained route
            i = (i + 1) % len(self.routes)
        return self.routes[i]


def _backend_key(spec: BackendSpec, served: str) -> str:
    return served + "|" + spec.model_dump_json(exclude={"model", "weight", "served"})


class Router:
    """The deployments a gateway serves, refreshed from the store and swapped atomically."""

    def __init__(self, store: Store, opener: BackendOpener, policy_loader: Callable[[str], Any]):
        self.store = store
        self._open = opener
        self._load_policy = policy_loader
        self._live: dict[str, LiveDeployment] = {}
        self._pool: dict[str, _Pooled] = {}
        self._lock = asyncio.Lock()
        self.errors: dict[str, str] = {}  # deployment -> why its newest version is not served
        self._retiring: set[asyncio.Task[None]] = set()  # tool boxes of swapped-out versions

    # -- reading (hot path: no I/O, no locks) -------------------------------------------------
    def get(self, name: str, team: str | None) -> LiveDeployment:
        """The served deployment `name` visible to `team` (None = every team: admin)."""
        dep = self._live.get(name)
        if dep is None or (team is not None and dep.spec.team != team):
            known = sorted(n for n, d in self._live.items() if team in (None, d.spec.team))
            raise NotFoundError(
                f"model {name!r} does not exist or you have no access to it; models: "
                f"{', '.join(known) or 'none'}"
            )
        return dep

    def visible(self, team: str | None) -> list[LiveDeployment]:
        """Served deployments of `team` (all for None)."""
        return [d for d in self._live.values() if team in (None, d.spec.team)]

    def backend_stats(self) -> dict[str, dict[str, float]]:
        """Per served version: the backend's own stats (queue depth, active) and in-flight."""
        out: dict[str, dict[str, float]] = {}
        for key, p in self._pool.items():
            stats = dict(p.backend.stats())
            stats["inflight"] = p.inflight
            out[key.split("|", 1)[0]] = stats
        return out

    # -- refreshing ---------------------------------------------------------------------------
    async def refresh(self) -> list[str]:
        """Serve the newest version of every deployment; returns the names that changed.

        A version that cannot be served (a model that fails to load) keeps the previous one
        in service and is reported in `errors` (and in /readyz)."""
        async with self._lock:
            infos = await asyncio.to_thread(D.list_current, self.store)
            changed: list[str] = []
            live = dict(self._live)
            for info in infos:
                old = live.get(info.spec.name)
                if old is not None and old.info.ref == info.ref:
                    continue
                try:
                    live[info.spec.name] = await self._build(info)
                except Exception as exc:  # keep serving the previous version
                    msg = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
                    self.errors[info.spec.name] = f"{info.ref}: {msg}"
                    log.error("cannot serve %s: %s", info.ref, msg)
                    continue
                self.errors.pop(info.spec.name, None)
                changed.append(info.spec.name)
                if old is not None:
                    self._release(old)
            self._live = live  # the swap: one reference assignment
            return changed

    async def _build(self, info: D.DeploymentInfo) -> LiveDeployment:
        routes: list[LiveRoute] = []
        acquired: list[str] = []
        try:
            for r in info.spec.routes:
                served = r.served or r.model
                key = _backend_key(r, served)
                pooled = self._pool.get(key)
                if pooled is None:
                    spec = BackendSpec.model_validate(
                        r.model_dump(exclude={"weight", "served"}) | {"model": served}
                    )
                    backend = await asyncio.to_thread(self._open, self.store, spec)
                    pooled = self._pool[key] = _Pooled(backend)
                pooled.users += 1
                acquired.append(key)
                routes.append(LiveRoute(r, pooled))
            guard = (
                await asyncio.to_thread(self._load_policy, info.spec.guard)
                if info.spec.guard
                else None
            )
            tools = None
            if info.spec.tools:  # MCP servers start here, once per deployment version
                from luodi.serve.tools.box import open_toolbox

                tools = await open_toolbox(info.spec.tools, info.spec.tool_loop)
        except BaseException:
            for key in acquired:
                self._pool[key].users -= 1
            self._collect()
            raise
        return LiveDeployment(info, routes, guard, tools)

    def _release(self, dep: LiveDeployment) -> None:
        for r in dep.routes:
            self._pool[_backend_key(r.route, r.served)].users -= 1
        self._collect()
        if dep.tools is not None:  # closed once its in-flight requests are done
            task = asyncio.get_running_loop().create_task(dep.tools.aclose())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    def _collect(self) -> None:
        for key, p in list(self._pool.items()):
            if p.users <= 0:
                del self._pool[key]
                asyncio.get_running_loop().create_task(_close_when_idle(p))

    async def aclose(self) -> None:
        """Close every backend (server shutdown)."""
        async with self._lock:
            lives = list(self._live.values())
            pools, self._pool, self._live = list(self._pool.values()), {}, {}
        for d in lives:
            if d.tools is not None:
                await d.tools.aclose(wait_s=5.0)
        if self._retiring:
            await asyncio.wait(list(self._retiring), timeout=30)
        for p in pools:
            await _close_when_idle(p, wait_s=5.0)


class _Lease:
    def __init__(self, pooled: _Pooled) -> None:
        self.pooled = pooled

    def __enter__(self) -> Backend:
        self.pooled.inflight += 1
        return self.pooled.backend

    def __exit__(self, *exc: object) -> None:
        self.pooled.inflight -= 1

    async def __aenter__(self) -> Backend:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()


async def _close_when_idle(p: _Pooled, wait_s: float = 600.0) -> None:
    """Close a retired backend after its in-flight requests finish (at most `wait_s`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while p.inflight > 0 and loop.time() < deadline:
        await asyncio.sleep(0.05)
    try:
        await p.backend.aclose()
    except Exception as exc:  # a failing close must not break the server
        log.warning("closing backend %s failed: %s", p.backend.ref, exc)
