"""Composite models (模型合作): a domain model and a general model behind one name.

A composite is a versioned artifact (kind `composite`) that deployments serve and eval runs
score like any model:
- `route`: a router (luodi.collab.router) trained on the domain dataset's prompts against
  general prompts sends each request to the domain or the general model;
- `cascade`: the domain model answers first; when the cascade's checks
  (luodi.collab.cascade) fail, the general model answers instead.

Files: `composite.json` (mode, the exact member references, router and cascade settings)
and, for `route`, `router/` (the fitted router). Meta: mode, members, classifier and the
router's held-out accuracy. Parents: the domain model (role "domain"), the general model
("general"), the router's datasets ("router_data", "router_general_data") and the cascade's
knowledge base ("knowledge_base"); members served from an endpoint (openai:…) have no
artifact and are named in composite.json only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from luodi.collab.cascade import CascadeCheck, CascadeSettings
from luodi.collab.router import ROUTER_KINDS, Router, load_router, train_router
from luodi.errors import BadInputError, NotFoundError
from luodi.store import ArtifactInfo, Store

KIND = "composite"
PREFIX = "composite:"
SPEC_FILE = "composite.json"
ROUTER_DIR = "router"
OPENAI_PREFIX = "openai:"
Member = Literal["domain", "general"]


class CompositeConfig(BaseModel):
    """`luodi models composite create`: what a composite is made of."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Composite name (clients and eval runs use it as a model).")
    mode: Literal["route", "cascade"] = Field(
        description="route: a router picks the member per request; cascade: the domain model "
        "answers first and the general model when the domain answer fails the checks."
    )
    domain: str = Field(description="Domain model: NAME[:vN|@stage], a base, or openai:URL#M.")
    general: str = Field(description="General model: same forms as domain.")
    data: str | None = Field(
        default=None, description="route: dataset whose prompts are in-domain (NAME[:vN])."
    )
    general_data: str | None = Field(
        default=None,
        description="route: dataset of out-of-domain prompts; default: the built-in general "
        "prompts (luodi.collab.general).",
    )
    classifier: str = Field(
        default="embedding", description="route: router kind, embedding or keyword."
    )
    embedder: str = Field(default="e5", description="route/embedding: embedder (e5 reads zh).")
    holdout: float = Field(
        default=0.25, gt=0, lt=1, description="Share of each side held out to set the threshold."
    )
    seed: int = Field(default=0, description="Seed of the held-out split.")
    threshold: float | None = Field(
        default=None, description="route: fixed router threshold instead of the chosen one."
    )
    cascade: CascadeSettings = Field(
        default_factory=CascadeSettings, description="cascade: when to fall back."
    )

    @model_validator(mode="after")
    def _check(self) -> CompositeConfig:
        from luodi.store.artifacts import check_name

        check_name(self.name)
        if self.mode == "route" and not self.data:
            raise ValueError("a route composite needs --data: the domain dataset to train on")
        if self.mode == "cascade" and (self.data or self.general_data):
            raise ValueError("--data/--general-data train a router, which only route mode uses")
        if self.mode == "route" and self.classifier not in ROUTER_KINDS:
            raise ValueError(
                f"unknown classifier {self.classifier!r}; known: " + ", ".join(ROUTER_KINDS.names())
            )
        return self


class CompositeInfo(BaseModel):
    """A registered composite version."""

    ref: str = Field(description="NAME:vN.")
    mode: str = Field(description="route or cascade.")
    domain: str = Field(description="The domain model's exact reference.")
    general: str = Field(description="The general model's exact reference.")
    classifier: str | None = Field(default=None, description="route: the router kind.")
    threshold: float | None = Field(default=None, description="route: the router threshold.")
    heldout: dict[str, Any] | None = Field(
        default=None, description="route: the router's held-out accuracy and recalls."
    )
    cascade: CascadeSettings | None = Field(default=None, description="cascade: its checks.")
    content_hash: str = Field(description="sha256 of its files.")
    created_at: str = Field(description="When, ISO 8601 UTC.")


def resolve_member(store: Store, ref: str) -> tuple[str, ArtifactInfo | None]:
    """(exact reference, artifact or None for an endpoint) of a member model: a model
    version, a base model, or openai:URL#MODEL. NotFoundError naming what exists."""
    from luodi.registry.stages import resolve_model_or_base

    ref = ref.strip()
    if ref.startswith(OPENAI_PREFIX):
        return ref, None
    info = resolve_model_or_base(
        store, ref, "member model", "a member can also be openai:http://HOST:PORT/v1#MODEL"
    )
    return info.ref, info


def find_composite(store: Store, ref: str) -> ArtifactInfo | None:
    """The composite `ref` names: `composite:NAME[:vN]` (NotFoundError when there is none),
    or a plain NAME[:vN] that is a composite (None when it is not one)."""
    ref = ref.strip()
    if ref.startswith(PREFIX):
        return store.resolve(ref[len(PREFIX) :], KIND)
    if "@" in ref or ref.startswith(OPENAI_PREFIX) or "/" in ref:
        return None
    try:
        return store.resolve(ref, KIND)
    except BadInputError:  # NotFoundError, or not a valid NAME[:vN] at all
        return None


def _prompts(info: ArtifactInfo) -> list[str]:
    """The prompt of each record: a qa record's first user turn, a preference's prompt, a
    text or labeled record's text."""
    from luodi.data.datasets import load_records

    out: list[str] = []
    for rec in load_records(info):
        if rec.get("messages"):
            users = [m.get("content") or "" for m in rec["messages"] if m.get("role") == "user"]
            out.append(users[0] if users else "")
        else:
            out.append(rec.get("prompt") or rec.get("text") or "")
    return [p for p in out if p.strip()]


def _dataset(store: Store, ref: str, what: str) -> tuple[ArtifactInfo, list[str]]:
    from luodi.data.datasets import resolve

    info = resolve(store, ref)
    prompts = _prompts(info)
    if not prompts:
        raise BadInputError(f"{what} dataset {info.ref} has no prompts to train a router on")
    return info, prompts


def create_composite(store: Store, cfg: CompositeConfig) -> CompositeInfo:
    """Resolve the members, train the router (route) or resolve the knowledge base
    (cascade), and register a new version of composite `cfg.name`.

    Everything is checked before anything is written: BadInputError/NotFoundError for an
    unknown member, dataset or knowledge base, the same model as both members, a name used
    by a model version, or too few prompts; nothing is registered then.
    """
    from luodi.collab.general import GENERAL_PROMPTS

    if store.list("model", cfg.name):
        raise BadInputError(
            f"{cfg.name!r} is already a model name; give the composite another name so a "
            "reference to it is not ambiguous"
        )
    domain, domain_art = resolve_member(store, cfg.domain)
    general, general_art = resolve_member(store, cfg.general)
    if domain == general:
        raise BadInputError(f"domain and general are both {domain}; a composite needs two models")
    parents: list[tuple[ArtifactInfo, str]] = []
    parents += [(domain_art, "domain")] if domain_art else []
    parents += [(general_art, "general")] if general_art else []
    spec: dict[str, Any] = {"mode": cfg.mode, "domain": domain, "general": general}
    meta: dict[str, Any] = dict(spec)
    router: Router | None = None
    heldout: dict[str, Any] = {}
    if cfg.mode == "route":
        assert cfg.data is not None
        data_art, dom = _dataset(store, cfg.data, "domain")
        parents.append((data_art, "router_data"))
        gen: Sequence[str] = GENERAL_PROMPTS
        if cfg.general_data:
            gen_art, gen = _dataset(store, cfg.general_data, "general")
            parents.append((gen_art, "router_general_data"))
        settings = {"embedder": cfg.embedder} if cfg.classifier == "embedding" else {}
        router, heldout = train_router(
            dom,
            gen,
            cfg.classifier,
            settings=settings,
            holdout=cfg.holdout,
            seed=cfg.seed,
            threshold=cfg.threshold,
        )
        spec["router"] = {"classifier": cfg.classifier, "threshold": router.threshold}
        spec["router_data"] = {"domain": data_art.ref, "general": cfg.general_data or "built-in"}
        meta |= {"classifier": cfg.classifier, "threshold": router.threshold, "heldout": heldout}
    else:
        cascade = cfg.cascade
        if cascade.knowledge_base:
            from luodi.rag.kb_build import resolve_kb

            kb = resolve_kb(store, cascade.knowledge_base)
            parents.append((kb, "knowledge_base"))
            cascade = cascade.model_copy(update={"knowledge_base": kb.ref})
        spec["cascade"] = cascade.model_dump(mode="json")
        meta["cascade"] = spec["cascade"]
    with store.create(KIND, cfg.name, parents=parents, meta=meta) as draft:
        (draft.path / SPEC_FILE).write_text(
            json.dumps(spec, ensure_ascii=False, indent=2), encoding="utf-8"
        )
        if router is not None:
            router.save(draft.path / ROUTER_DIR, heldout)
    assert draft.artifact is not None
    return composite_info(draft.artifact)


def composite_info(a: ArtifactInfo) -> CompositeInfo:
    """The CompositeInfo of a registered version."""
    m = a.meta
    return CompositeInfo(
        ref=a.ref,
        mode=m["mode"],
        domain=m["domain"],
        general=m["general"],
        classifier=m.get("classifier"),
        threshold=m.get("threshold"),
        heldout=m.get("heldout"),
        cascade=CascadeSettings.model_validate(m["cascade"]) if m.get("cascade") else None,
        content_hash=a.content_hash,
        created_at=a.created_at.isoformat(),
    )


def resolve_composite(store: Store, ref: str) -> ArtifactInfo:
    """The composite version `ref` (NAME, NAME:vN or composite:NAME…); NotFoundError naming
    the composites otherwise."""
    found = find_composite(store, ref)
    if found is None:
        known = ", ".join(sorted({a.name for a in store.list(KIND)})) or "none yet"
        raise NotFoundError(f"no composite {ref!r}; composites: {known}")
    return found


def list_composites(store: Store) -> list[CompositeInfo]:
    """Every composite version, oldest first."""
    return [composite_info(a) for a in store.list(KIND)]


def question_of(prompt: str | list[dict[str, Any]] | None) -> str:
    """The text a router or a check judges: a plain prompt, or the last user message."""
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    users = [m.get("content") for m in prompt if m.get("role") == "user"]
    last = users[-1] if users else ""
    return last if isinstance(last, str) else ""


@dataclass
class Composite:
    """A loaded composite version: its members' references and how it decides."""

    info: ArtifactInfo
    mode: str
    domain: str
    general: str
    router: Router | None
    cascade: CascadeCheck | None

    @property
    def ref(self) -> str:
        """NAME:vN."""
        return self.info.ref

    def member_ref(self, member: Member) -> str:
        """The reference of the `domain` or `general` member."""
        return self.domain if member == "domain" else self.general

    def served_by(self, member: Member) -> str:
        """What answered, as recorded: "COMPOSITE:vN>MEMBER_REF"."""
        return f"{self.ref}>{self.member_ref(member)}"

    def route(self, questions: Sequence[str]) -> list[Member]:
        """route mode: the member for each question (the router's decision)."""
        assert self.router is not None
        return ["domain" if hit else "general" for hit, _ in self.router.decide(questions)]


def load_composite(store: Store, ref: str) -> Composite:
    """The composite version `ref` loaded (its router read; the members are not opened)."""
    a = resolve_composite(store, ref)
    spec = json.loads((a.path / SPEC_FILE).read_text(encoding="utf-8"))
    router = load_router(a.path / ROUTER_DIR) if spec["mode"] == "route" else None
    cascade = (
        CascadeCheck(store, CascadeSettings.model_validate(spec["cascade"]))
        if spec["mode"] == "cascade"
        else None
    )
    return Composite(a, spec["mode"], spec["domain"], spec["general"], router, cascade)
