"""A composite as an eval target: suites score it like any model, through its members.

Both members open as eval targets of their own (luodi.eval.targets.open_target: local
models, bases, endpoints). What it can do:
- route: `generate`, `stream` and the log-likelihood capabilities both members have; each
  prompt (or scored context, or whole text) goes to the member the router picks for it;
- cascade: `generate` only (a fallback depends on the domain model's reply, which a
  log-likelihood does not produce): prompts failing the retrieval check go to the general
  model at once, the rest to the domain model, and its replies failing the marker check are
  asked of the general model again.
`describe()` (written to the run's run.json after scoring) records how many replies each
member gave and, per generated reply in call order, which member answered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from luodi.collab.composite import Composite, Member, load_composite, question_of
from luodi.eval.streaming import TokenStream
from luodi.eval.targets import GenerationParams, Prompt, Target, Unsupported, open_target
from luodi.store import Store

T = TypeVar("T")
_ROUTABLE = frozenset(
    {"generate", "stream", "loglikelihood", "chat_loglikelihood", "rolling_loglikelihood"}
)


class CompositeTarget(Unsupported):
    """A composite scored through its member targets (see the module docstring)."""

    def __init__(self, composite: Composite, domain: Target, general: Target) -> None:
        self.composite = composite
        self.members: dict[Member, Target] = {"domain": domain, "general": general}
        self.ref = composite.ref
        self.artifact = composite.info
        shared = domain.capabilities & general.capabilities
        self.capabilities = shared & (
            _ROUTABLE if composite.mode == "route" else frozenset({"generate"})
        )
        self.answered: dict[Member, int] = {"domain": 0, "general": 0}
        self.fallbacks: dict[str, int] = {}
        self.served: list[str] = []

    @property
    def truncated(self) -> int:
        """Inputs the members cut to fit their context."""
        return sum(getattr(t, "truncated", 0) or 0 for t in self.members.values())

    def describe(self) -> dict[str, Any]:
        """Kind, ref, hash, mode, both members' descriptions and who answered what."""
        return {
            "kind": "composite",
            "ref": self.ref,
            "content_hash": self.artifact.content_hash,
            "mode": self.composite.mode,
            "members": {m: t.describe() for m, t in self.members.items()},
            "answered": dict(self.answered),
            "fallbacks": dict(self.fallbacks),
            "served_by": list(self.served),
        }

    def _by_member(
        self, items: Sequence[Any], picks: Sequence[Member], run: Callable[[Target, list], list[T]]
    ) -> list[T]:
        """run(member target, its items) per member, results back in the items' order."""
        out: list[Any] = [None] * len(items)
        for member, target in self.members.items():
            idx = [i for i, p in enumerate(picks) if p == member]
            if idx:
                for i, value in zip(idx, run(target, [items[i] for i in idx]), strict=True):
                    out[i] = value
        return out

    def _note(self, member: Member) -> None:
        self.answered[member] += 1
        self.served.append(self.composite.served_by(member))

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[str]:
        """The reply to each prompt from the member the composite picks for it."""
        questions = [question_of(p) for p in prompts]
        if self.composite.mode == "route":
            picks = self.composite.route(questions)
        else:
            check = self.composite.cascade
            assert check is not None
            picks = []
            for q in questions:
                why = check.before(q)
                picks.append("domain" if why is None else "general")
                if why is not None:
                    self._count(why)
        replies = self._by_member(prompts, picks, lambda t, ps: t.generate(ps, params))
        if self.composite.mode == "cascade":
            check = self.composite.cascade
            assert check is not None
            again = []
            for i, (pick, reply) in enumerate(zip(picks, replies, strict=True)):
                why = check.after(reply) if pick == "domain" else None
                if why is not None:
                    self._count(why)
                    again.append(i)
            if again:
                redo = self.members["general"].generate([prompts[i] for i in again], params)
                for i, reply in zip(again, redo, strict=True):
                    replies[i], picks[i] = reply, "general"
        for p in picks:
            self._note(p)
        return replies

    def _count(self, why: str) -> None:
        signal = why.split(":", 1)[0]
        self.fallbacks[signal] = self.fallbacks.get(signal, 0) + 1

    def loglikelihood(
        self, contexts: Sequence[Prompt], continuations: Sequence[str]
    ) -> list[float]:
        """route: each pair scored by the member the router picks for its context."""
        if "loglikelihood" not in self.capabilities:
            return super().loglikelihood(contexts, continuations)
        picks = self.composite.route([question_of(c) for c in contexts])
        pairs = list(zip(contexts, continuations, strict=True))
        return self._by_member(
            pairs,
            picks,
            lambda t, ps: t.loglikelihood([c for c, _ in ps], [x for _, x in ps]),
        )

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[tuple[float, int]]:
        """route: each text scored by the member the router picks for it."""
        if "rolling_loglikelihood" not in self.capabilities:
            return super().loglikelihood_rolling(texts)
        picks = self.composite.route(list(texts))
        return self._by_member(list(texts), picks, lambda t, ts: t.loglikelihood_rolling(ts))

    def stream(self, prompt: Prompt, params: GenerationParams) -> TokenStream:
        """route: the reply streamed by the member the router picks."""
        if "stream" not in self.capabilities:
            return super().stream(prompt, params)
        (pick,) = self.composite.route([question_of(prompt)])
        self._note(pick)
        return self.members[pick].stream(prompt, params)


def open_composite_target(store: Store, ref: str, *, batch_size: int = 16) -> CompositeTarget:
    """The composite `ref` with both members opened as eval targets."""
    composite = load_composite(store, ref)
    domain = open_target(store, composite.domain, batch_size=batch_size)
    general = open_target(store, composite.general, batch_size=batch_size)
    return CompositeTarget(composite, domain, general)
