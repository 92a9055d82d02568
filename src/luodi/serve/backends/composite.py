"""The composite engine: a composite model (luodi.collab) served as one backend.

A deployment route whose model is a composite (`model: NAME[:vN]` or `composite:NAME`,
engine auto or `composite`) opens both members with `open_backend` (each on the engine its
model needs, with the route's dtype, batch, key and timeout settings) and answers each
request through one of them:
- route: the composite's router picks the member from the last user message (or the prompt);
- cascade: the retrieval check may send the request to the general model at once; otherwise
  the domain model answers, and when its reply fails the marker check the general model
  answers instead. The domain model's tokens were spent either way, so they are added to the
  usage of a fallen-back reply. A cascade stream is held until the domain reply is checked:
  a kept domain reply arrives as one piece, a fallback streams live from the general model.
Every GenResult (and StreamEnd) says which member answered in `served_by`
("COMPOSITE:vN>MEMBER_REF"); the gateway's version label stays the composite version.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator

from luodi.collab.composite import Composite, Member, load_composite, question_of
from luodi.serve.backends.base import (
    Backend,
    BackendSpec,
    GenRequest,
    GenResult,
    StreamDelta,
    StreamEnd,
    check_request,
    open_backend,
    unsupported,
)
from luodi.store import Store

log = logging.getLogger("luodi.serve")
# What the composite can pass through: embeddings are not routed (no prompt to route by).
_ROUTED = frozenset({"chat", "completions", "stream", "tools"})


class CompositeBackend:
    """Serves a composite by delegating each request to one member backend."""

    def __init__(self, composite: Composite, domain: Backend, general: Backend) -> None:
        self.composite = composite
        self.members: dict[Member, Backend] = {"domain": domain, "general": general}
        self.ref = composite.ref
        self.capabilities = domain.capabilities & general.capabilities & _ROUTED
        self.answered: dict[Member, int] = {"domain": 0, "general": 0}

    def _served(self, result: GenResult, member: Member, spent: GenResult | None) -> GenResult:
        self.answered[member] += 1
        extra = {"served_by": self.composite.served_by(member)}
        if spent is not None:  # the domain reply that was not kept still cost its tokens
            extra |= {
                "prompt_tokens": result.prompt_tokens + spent.prompt_tokens,
                "completion_tokens": result.completion_tokens + spent.completion_tokens,
            }
        return dataclasses.replace(result, **extra)

    async def _route(self, req: GenRequest) -> Member:
        question = question_of(req.messages if req.messages is not None else req.prompt)
        (member,) = await asyncio.to_thread(self.composite.route, [question])
        return member

    async def _domain_first(self, req: GenRequest) -> tuple[GenResult | None, str | None]:
        """cascade: (the domain reply or None when it was not asked, why to fall back)."""
        check = self.composite.cascade
        assert check is not None
        question = question_of(req.messages if req.messages is not None else req.prompt)
        why = await asyncio.to_thread(check.before, question)
        if why is not None:
            return None, why
        reply = await self.members["domain"].generate(req)
        if reply.tool_calls:  # a tool call is an answer the markers cannot judge: keep it
            return reply, None
        return reply, check.after(reply.text)

    async def generate(self, req: GenRequest) -> GenResult:
        """The reply of the member the composite picks (see the module docstring)."""
        check_request(req, self.ref, self.capabilities)
        if self.composite.mode == "route":
            member = await self._route(req)
            return self._served(await self.members[member].generate(req), member, None)
        reply, why = await self._domain_first(req)
        if why is None and reply is not None:
            return self._served(reply, "domain", None)
        log.info("%s falls back to %s: %s", self.ref, self.composite.general, why)
        return self._served(await self.members["general"].generate(req), "general", reply)

    async def stream(self, req: GenRequest) -> AsyncIterator[StreamDelta | StreamEnd]:
        """The reply as it is generated, from the member the composite picks."""
        check_request(req, self.ref, self.capabilities)
        spent: GenResult | None = None
        if self.composite.mode == "route":
            member = await self._route(req)
        else:
            reply, why = await self._domain_first(req)
            if why is None and reply is not None:
                if reply.text:
                    yield StreamDelta(reply.text)
                yield StreamEnd(self._served(reply, "domain", None))
                return
            member, spent = "general", reply
        events = self.members[member].stream(req)
        try:
            async for ev in events:
                if isinstance(ev, StreamEnd):
                    ev = StreamEnd(self._served(ev.result, member, spent))
                yield ev
        finally:
            close = getattr(events, "aclose", None)
            if close is not None:  # a client that left stops the member's generation
                await close()

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Not served: a composite routes generation only."""
        raise unsupported(self.ref, "embeddings")

    def stats(self) -> dict[str, float]:
        """Both members' load added up, and how many replies each member gave."""
        out: dict[str, float] = {"queue_depth": 0.0, "active": 0.0}
        for b in self.members.values():
            s = b.stats()
            out["queue_depth"] += s.get("queue_depth", 0)
            out["active"] += s.get("active", 0)
        out |= {f"answered_{m}": float(n) for m, n in self.answered.items()}
        return out

    async def aclose(self) -> None:
        """Close both members."""
        for b in self.members.values():
            await b.aclose()


def open_composite(store: Store, spec: BackendSpec) -> CompositeBackend:
    """The composite `spec.model` names, with both members opened (blocking: loads them).

    NotFoundError when it is not a composite; a member that fails to open closes the one
    already opened and raises its error.
    """
    composite = load_composite(store, spec.model)

    def member(ref: str) -> Backend:
        return open_backend(store, spec.model_copy(update={"model": ref, "engine": "auto"}))

    domain = member(composite.domain)
    try:
        general = member(composite.general)
    except BaseException:
        asyncio.run(domain.aclose())  # open_composite runs in a worker thread: no loop here
        raise
    return CompositeBackend(composite, domain, general)
