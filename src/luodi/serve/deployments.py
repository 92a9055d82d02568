"""Deployments: an endpoint model name mapped to model versions with traffic weights.

A deployment is a versioned artifact (kind `deployment`): every `apply`, `promote` and
`rollback` registers a new version whose folder holds `deployment.json` (the spec with each
route's model resolved to the exact version that serves it), whose parents are those model
versions (lineage from an answer back to the data), and whose meta records the action, who
made it and why. The newest version of each name is what the gateway serves; a running server
notices a new version within its reload interval and swaps to it without a restart.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from luodi.errors import BadInputError, NotFoundError
from luodi.rag.answer import RagSettings
from luodi.serve.backends.base import BackendSpec
from luodi.serve.canary import CanaryGuardSettings
from luodi.serve.tools.spec import ToolList, ToolLoop
from luodi.store import ArtifactInfo, Store

KIND = "deployment"
SPEC_FILE = "deployment.json"


class Route(BackendSpec):
    """One model behind a deployment with its share of the traffic."""

    weight: float = Field(
        default=100.0, ge=0, description="Relative share of traffic (e.g. 90 and 10 = 90%/10%)."
    )
    served: str | None = Field(
        default=None,
        description="Filled in by apply: the exact version (NAME:vN) this route serves.",
    )


class DeploymentSpec(BaseModel):
    """An endpoint: what clients call it, who may, which versions answer and how."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The model name clients send (`model` in the request).")
    team: str = Field(default="default", description="The team whose keys may call it.")
    routes: list[Route] = Field(
        min_length=1, description="Model versions and their traffic weights (canary releases)."
    )
    sticky: Literal["key", "user", "none"] = Field(
        default="key",
        description=(
            "Keep each API key (or each `user` field) on the same route while weights stay the "
            "same; 'none' picks per request."
        ),
    )
    system_prompt: str | None = Field(
        default=None, description="Put before the client's messages (merged with its system)."
    )
    guard: str | None = Field(
        default=None,
        description="Guard policy on input and output: 'default' or a policy YAML path.",
    )
    knowledge_bases: list[str] = Field(
        default_factory=list,
        description="Knowledge bases (NAME = newest version, or NAME:vN) answers are grounded in.",
    )
    rag: RagSettings = Field(
        default_factory=RagSettings, description="How answers use the knowledge bases."
    )
    max_tokens: int | None = Field(
        default=None, ge=1, description="Cap on max_tokens for this endpoint (server cap too)."
    )
    tools: ToolList = Field(
        default_factory=list,
        description="Server-side tools the gateway runs for the model (http or mcp sources).",
    )
    tool_loop: ToolLoop = Field(
        default_factory=ToolLoop, description="Bounds on running server-side tools per request."
    )
    canary_guard: CanaryGuardSettings = Field(
        default_factory=CanaryGuardSettings,
        description="While a canary runs, roll it back by itself when it is significantly worse.",
    )

    @model_validator(mode="after")
    def _check(self) -> DeploymentSpec:
        from luodi.store.artifacts import check_name

        check_name(self.name)
        if sum(r.weight for r in self.routes) <= 0:
            raise ValueError("at least one route needs a weight above 0")
        return self

    def comparable(self) -> dict[str, Any]:
        """The spec as JSON data without the settings left at their defaults, for telling
        whether an apply changes anything (a field added in a newer luodi, left at its
        default, is no change)."""
        return self.model_dump(mode="json", exclude_defaults=True)


class DeploymentInfo(BaseModel):
    """A registered deployment version."""

    ref: str = Field(description="NAME:vN of this deployment version.")
    spec: DeploymentSpec = Field(description="The deployment, routes resolved.")
    action: str = Field(description="apply, promote, rollback or auto-rollback.")
    reason: str | None = Field(default=None, description="Why (for rollbacks).")
    created_at: str = Field(description="When, ISO 8601 UTC.")
    created_by: str = Field(description="Who.")
    changed: bool = Field(default=True, description="False when apply found nothing to change.")


def _served(store: Store, route: Route) -> tuple[str, ArtifactInfo | None]:
    """(the exact reference that serves, the artifact for lineage) for a route's model; a
    route already resolved (a rollback re-applies an old spec) keeps its version."""
    from luodi.rag.embed import EMBEDDERS

    ref = route.served or route.model
    if ref.startswith("openai:") or route.engine == "embedding" or ref in EMBEDDERS.names():
        return ref, None
    from luodi.collab.composite import find_composite

    composite = find_composite(store, ref)  # a composite serves as its exact version
    if composite is not None:
        return composite.ref, composite
    from luodi.registry.stages import resolve_model_or_base

    info = resolve_model_or_base(store, ref, "route model")
    return info.ref, info


def _info(a: ArtifactInfo, changed: bool = True) -> DeploymentInfo:
    spec = json.loads((a.path / SPEC_FILE).read_text(encoding="utf-8"))
    return DeploymentInfo(
        ref=a.ref,
        spec=DeploymentSpec.model_validate(spec),
        action=a.meta.get("action", "apply"),
        reason=a.meta.get("reason"),
        created_at=a.created_at.isoformat(),
        created_by=a.created_by,
        changed=changed,
    )


def _register(
    store: Store, spec: DeploymentSpec, action: str, reason: str | None
) -> DeploymentInfo:
    routes, parents = [], []
    for r in spec.routes:
        served, artifact = _served(store, r)
        routes.append(r.model_copy(update={"served": served}))
        if artifact is not None and all(p.ref != artifact.ref for p, _ in parents):
            parents.append((artifact, "serves"))
    resolved = spec.model_copy(update={"routes": routes})
    latest = _latest(store, spec.name)
    if action == "apply" and latest is not None:
        current = _info(latest)
        if current.spec.comparable() == resolved.comparable():
            return _info(latest, changed=False)
    meta = {"action": action, "reason": reason, "team": spec.team}
    with store.create(KIND, spec.name, parents=parents, meta=meta) as draft:
        (draft.path / SPEC_FILE).write_text(
            json.dumps(resolved.model_dump(mode="json"), ensure_ascii=False, indent=2),
            encoding="utf-8",
        )
    assert draft.artifact is not None
    return _info(draft.artifact)


def _latest(store: Store, name: str) -> ArtifactInfo | None:
    found = store.list(KIND, name)
    return found[-1] if found else None


def apply(store: Store, spec: DeploymentSpec) -> DeploymentInfo:
    """Register `spec` as the newest version of its deployment (unchanged: no new version).

    Each route's model is resolved now (NAME@production becomes the NAME:vN it names), so a
    later promotion in the registry does not silently change what is served.
    """
    return _register(store, spec, "apply", None)


def current(store: Store, name: str) -> DeploymentInfo:
    """The deployment version being served; NotFoundError naming the deployments."""
    latest = _latest(store, name)
    if latest is None:
        known = ", ".join(sorted({a.name for a in store.list(KIND)})) or "none yet"
        raise NotFoundError(f"no deployment {name!r}; deployments: {known}")
    return _info(latest)


def history(store: Store, name: str) -> list[DeploymentInfo]:
    """Every version of a deployment, oldest first."""
    current(store, name)
    return [_info(a) for a in store.list(KIND, name)]


def list_current(store: Store, team: str | None = None) -> list[DeploymentInfo]:
    """The newest version of each deployment (of `team` when given)."""
    latest: dict[str, ArtifactInfo] = {}
    for a in store.list(KIND):
        latest[a.name] = a
    infos = [_info(a) for a in latest.values()]
    return [i for i in infos if team is None or i.spec.team == team]


def promote(store: Store, name: str, model: str | None = None) -> DeploymentInfo:
    """Send all traffic to one route: `model` (a route's model or served version) or, by
    default, the canary (the route with the smallest non-zero weight)."""
    dep = current(store, name)
    routes = dep.spec.routes
    if model is None:
        if len(routes) < 2:
            raise BadInputError(f"{name} has one route; nothing to promote")
        live = [r for r in routes if r.weight > 0]
        chosen = min(live, key=lambda r: r.weight)
    else:
        hits = [r for r in routes if model in (r.model, r.served)]
        if not hits:
            have = ", ".join(r.served or r.model for r in routes)
            raise NotFoundError(f"{name} has no route {model!r}; routes: {have}")
        chosen = hits[0]
    spec = dep.spec.model_copy(update={"routes": [chosen.model_copy(update={"weight": 100.0})]})
    return _register(store, spec, "promote", f"promoted {chosen.served or chosen.model}")


def rollback(
    store: Store, name: str, reason: str | None = None, action: str = "rollback"
) -> DeploymentInfo:
    """Serve the previous version's spec again, as a new version that says why."""
    versions = store.list(KIND, name)
    if not versions:
        current(store, name)  # raises NotFoundError naming the deployments
    if len(versions) < 2:
        raise BadInputError(f"{name} has only one version; nothing to roll back to")
    previous = _info(versions[-2])
    return _register(store, previous.spec, action, reason or f"back to {previous.ref}")


def auto_rollback(
    store: Store, name: str, canary: str, expected_ref: str, reason: str
) -> DeploymentInfo:
    """Take the canary route (served version `canary`) out of deployment `name` and give its
    weight to production (the largest-weight route), recorded as action "auto-rollback" with
    `reason`. The gateway's canary guard calls it once it found the canary worse while
    `expected_ref` was served; ConflictError when the deployment has changed since (someone
    applied, promoted or rolled back: their decision stands), NotFoundError when the
    deployment has no live route serving `canary`.
    """
    from luodi.errors import ConflictError

    dep = current(store, name)
    if dep.ref != expected_ref:
        raise ConflictError(f"{name} is now {dep.ref}, not {expected_ref}; left as it is")
    routes = dep.spec.routes
    hit = next((r for r in routes if r.weight > 0 and (r.served or r.model) == canary), None)
    if hit is None or len(routes) < 2:
        have = ", ".join(r.served or r.model for r in routes)
        raise NotFoundError(f"{name} has no canary route {canary!r}; routes: {have}")
    rest = [r for r in routes if r is not hit]
    prod = max(rest, key=lambda r: r.weight)
    kept = [
        r.model_copy(update={"weight": r.weight + hit.weight}) if r is prod else r for r in rest
    ]
    return _register(store, dep.spec.model_copy(update={"routes": kept}), "auto-rollback", reason)
