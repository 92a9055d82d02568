"""The gateway's shared request path: who is calling, may they, which version answers, and the
record of what happened (usage, the masked request log, guard verdicts, metrics).

Every inference endpoint runs the same steps through a `Call`:
admit (API key → role and endpoint check → rate limit → token quota) → the deployment the
`model` names (scoped to the caller's team) → a route by traffic weight (sticky per key or
user) → input guard → the backend → output guard → `finish` (usage row, request log, metrics).
The hot path does no database I/O: keys are cached, limits are in memory or one Redis call,
and records go to a background writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import Request

from luodi.errors import AuthError, BadInputError, LuodiError
from luodi.serve.auth import KeyStore, Principal, authorize
from luodi.serve.canary import CanaryWatch, Decision
from luodi.serve.config import ServeConfig
from luodi.serve.limits import Quotas, RateLimiter
from luodi.serve.metrics import Metrics
from luodi.serve.routing import BackendOpener, LiveDeployment, LiveRoute, Router
from luodi.serve.usage import RequestLogEvent, UsageEvent, UsageRecorder
from luodi.store import Store

log = logging.getLogger("luodi.serve")

# The caller when auth is off (a trusted single-user machine): an admin of team "default".
ANONYMOUS = Principal(key_id="anonymous", team="default", role="admin", name="anonymous")


@dataclass
class ServeDeps:
    """Everything the app needs, built by `luodi serve` or by a test."""

    store: Store
    config: ServeConfig
    keys: KeyStore
    limiter: RateLimiter
    quotas: Quotas
    recorder: UsageRecorder
    opener: BackendOpener
    policy_loader: Callable[[str], Any]


class Blocked(Exception):  # noqa: N818 - a verdict, not an error
    """The input guard blocked the request: the reply is the policy's refusal."""

    def __init__(self, refusal: str) -> None:
        super().__init__(refusal)
        self.refusal = refusal


@dataclass
class Call:
    """One inference request on its way through the gateway."""

    gateway: Gateway
    request_id: str
    principal: Principal
    endpoint: str
    deployment: LiveDeployment
    route: LiveRoute
    started: float = field(default_factory=time.perf_counter)
    guard_log: list[dict[str, Any]] = field(default_factory=list)
    retrieved: list[str] = field(default_factory=list)
    citations: list[dict[str, Any]] = field(default_factory=list)
    tools_executed: list[dict[str, Any]] = field(default_factory=list)  # server-side tool calls
    prompt_text: str = ""
    response_text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_ms: float | None = None
    served_by: str | None = None  # the member of a composite that answered ("C:vN>MEMBER")
    finished: bool = False

    @property
    def version(self) -> str:
        return self.route.served

    def first_token(self) -> None:
        """Note the time to first token (once)."""
        if self.ttft_ms is None:
            self.ttft_ms = (time.perf_counter() - self.started) * 1000
            self.gateway.metrics.ttft.labels(self.version).observe(self.ttft_ms / 1000)

    def check(self, direction: str, text: str) -> tuple[str, bool]:
        """Run the deployment's guard on `text`: (text to use, blocked). Logged and counted."""
        policy = self.deployment.guard
        if policy is None or not text:
            return text, False
        verdict = policy.check_input(text) if direction == "input" else policy.check_output(text)
        self.note_verdict(direction, verdict)
        return verdict.text, verdict.action == "block"

    def note_verdict(self, direction: str, verdict: Any) -> None:
        """Keep a guard verdict for the request log and count it."""
        if verdict.action == "allow":
            return
        self.guard_log.append({"direction": direction, **verdict.to_log()})
        for cat in verdict.categories or ["-"]:
            self.gateway.metrics.guard.labels(direction, verdict.action, cat).inc()

    def finish(self, status: int = 200, error_type: str | None = None) -> None:
        """Record usage, the masked request log and metrics (once)."""
        if self.finished:
            return
        self.finished = True
        self.gateway.record(self, status, error_type)


class Gateway:
    """The shared state and request path of one gateway app."""

    def __init__(self, deps: ServeDeps) -> None:
        self.deps = deps
        self.config = deps.config
        self.store = deps.store
        self.router = Router(deps.store, deps.opener, deps.policy_loader)
        self.metrics = Metrics(self.router.backend_stats)
        self.canary = CanaryWatch()
        self._rollbacks: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self.ready = False

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the deployments and start watching the store for new versions."""
        await self.router.refresh()
        self.ready = True
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.config.reload_interval_s)
            try:
                changed = await self.router.refresh()
                if changed:
                    log.info("now serving new versions of: %s", ", ".join(changed))
            except Exception as exc:  # a store hiccup must not stop the watcher
                log.warning("deployment refresh failed: %s", exc)

    async def stop(self) -> None:
        """Stop watching, close backends, flush the records."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._rollbacks:  # a canary rollback being registered finishes first
            await asyncio.wait(list(self._rollbacks), timeout=30)
        await self.router.aclose()
        await self.deps.limiter.aclose()
        await asyncio.to_thread(self.deps.recorder.close)

    # -- admission ----------------------------------------------------------------------------
    def principal(self, request: Request) -> Principal:
        """The caller, from `Authorization: Bearer <key>`; AuthError when missing or bad."""
        if not self.config.auth:
            return ANONYMOUS
        header = request.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise AuthError(
                "missing API key: send `Authorization: Bearer <key>` (an admin creates keys "
                "with `luodi keys create`)"
            )
        return self.deps.keys.authenticate(secret.strip())

    async def admit(self, request: Request, endpoint: str) -> Principal:
        """Authenticate, authorize `endpoint`, then charge the rate limit and check quotas."""
        principal = self.principal(request)
        authorize(principal, endpoint)
        if principal.rpm:
            await self.deps.limiter.check(principal.key_id, principal.rpm)
        await self.deps.quotas.check(principal)
        return principal

    def open_call(
        self, request: Request, principal: Principal, endpoint: str, model: str, user: str | None
    ) -> Call:
        """Resolve the deployment and route for a request (404 for a model the caller's team
        cannot see; 400 for one that cannot do `endpoint`)."""
        team = None if principal.role == "admin" else principal.team
        dep = self.router.get(model, team)
        sticky = user if dep.spec.sticky == "user" else principal.key_id
        route = dep.pick(sticky)
        need = _CAPABILITY[endpoint]
        if need not in route.backend.capabilities:
            raise BadInputError(
                f"model {model!r} cannot serve {endpoint} (it serves "
                f"{', '.join(sorted(route.backend.capabilities)) or 'nothing'})"
            )
        return Call(self, request.state.request_id, principal, endpoint, dep, route)

    # -- records ------------------------------------------------------------------------------
    def record(self, call: Call, status: int, error_type: str | None) -> None:
        latency_ms = (time.perf_counter() - call.started) * 1000
        m = self.metrics
        m.requests.labels(call.endpoint, call.deployment.spec.name, call.version, str(status)).inc()
        m.latency.labels(call.endpoint, call.version).observe(latency_ms / 1000)
        m.tokens.labels("in", call.version).inc(call.prompt_tokens)
        m.tokens.labels("out", call.version).inc(call.completion_tokens)
        if error_type:
            m.errors.labels(call.endpoint, error_type).inc()
        decision = self.canary.observe(
            call.deployment.info, call.version, call.request_id, status, latency_ms, call.guard_log
        )
        if decision is not None:
            self._roll_back(decision)
        now = datetime.now(UTC)
        base = {
            "request_id": call.request_id,
            "at": now,
            "key_id": call.principal.key_id,
            "team": call.principal.team,
            "deployment": call.deployment.spec.name,
            "model_version": call.served_by or call.version,
            "endpoint": call.endpoint,
        }
        rec = self.deps.recorder
        rec.record_usage(
            UsageEvent(
                **base,
                prompt_tokens=call.prompt_tokens,
                completion_tokens=call.completion_tokens,
                latency_ms=latency_ms,
                ttft_ms=call.ttft_ms,
                status=status,
                error_type=error_type,
            )
        )
        rec.record_request(
            RequestLogEvent(
                **base,
                prompt=call.prompt_text,
                response=call.response_text,
                retrieved=call.retrieved,
                guard=call.guard_log + call.tools_executed,  # tool calls: direction "tool"
                status=status,
            )
        )

    # -- guarded canary -----------------------------------------------------------------------
    def note_feedback(self, request_id: str, rating: float | None) -> None:
        """Count a rating (0-1) in the canary guard's windows (feedback router)."""
        decision = self.canary.rate(request_id, rating)
        if decision is not None:
            self._roll_back(decision)

    def _roll_back(self, decision: Decision) -> None:
        """Start the rollback of a canary found worse, off the request path."""
        log.warning(
            "canary guard: rolling back %s in %s: %s",
            decision.canary,
            decision.ref,
            decision.reason,
        )
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # recorded outside the server's loop: register now, the watcher
            self._register_rollback(decision)  # notices the new version within its interval
            return
        task = loop.create_task(self._auto_rollback(decision))
        self._rollbacks.add(task)
        task.add_done_callback(self._rollbacks.discard)

    def _register_rollback(self, decision: Decision) -> bool:
        from luodi.serve import deployments as D

        try:
            info = D.auto_rollback(
                self.store, decision.deployment, decision.canary, decision.ref, decision.reason
            )
        except LuodiError as exc:  # someone changed the deployment meanwhile: theirs stands
            log.warning("canary guard: %s not rolled back: %s", decision.ref, exc.message)
            return False
        self.metrics.canary_rollbacks.labels(decision.deployment).inc()
        log.warning("canary guard: %s now serves %s (auto-rollback)", info.ref, decision.production)
        return True

    async def _auto_rollback(self, decision: Decision) -> None:
        try:
            done = await asyncio.to_thread(self._register_rollback, decision)
            if done:  # move the traffic now rather than at the next reload
                await self.router.refresh()
        except Exception as exc:  # a store hiccup must not go unnoticed, nor crash the loop
            log.error("canary guard: rolling back %s failed: %s", decision.ref, exc)

    def fail(self, call: Call, exc: BaseException) -> None:
        """Record a call that ended in an error."""
        if isinstance(exc, LuodiError):
            call.finish(exc.http_status, exc.error_type)
        else:
            call.finish(500, "server_error")


_CAPABILITY = {"chat.completions": "chat", "completions": "completions", "embeddings": "embeddings"}
