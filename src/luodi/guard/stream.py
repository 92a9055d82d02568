"""The output guard over a streamed reply: emit what is decided, hold back the rest.

`feed(delta)` appends a piece of the reply and returns the text that is now safe to send.
Each detector says from where on its hits could still change when more text arrives
(`stable_before`: the longest lexicon term, the longest injection pattern, a number's
width, an e-mail still growing at the end); text before that point is decided. The guard
emits it, masked where the mask rules say, but never stops inside or right after a hit (or
a shield: an allowed e-mail, a lexicon exception), so that the next scan, which starts where
the emitted text ends, sees exactly what a scan of the whole reply sees there.

Hence, for any split of a reply into deltas: when nothing blocks, the emitted pieces joined
equal `check_output(reply).text`; when a block rule matches, the step that finds the match
returns blocked=True before any character of it was emitted, and the app ends the stream
with the refusal. Only the tail after the last emitted point is rescanned, so a stream costs
about one scan of its text plus one window per delta.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from luodi.guard.base import Hit
from luodi.guard.normalize import Normalized, normalize
from luodi.guard.verdict import Match, Verdict, apply_masks, make_verdict

if TYPE_CHECKING:
    from luodi.guard.policy import Engine


@dataclass
class StreamStep:
    """What one feed()/finish() gives: the text to send now, the verdict (only when the
    stream is blocked, and from finish(): the whole reply's verdict) and whether to stop."""

    emit: str
    verdict: Verdict | None = None
    blocked: bool = False


class StreamGuard:
    """Checks one streamed text with a policy's rules for `direction` (normally "output")."""

    def __init__(self, engine: Engine, direction: str = "output") -> None:
        self._engine = engine
        self._direction = direction
        checks = sorted({r.check for r in engine.rules[direction]})
        self._dets = [engine.detectors[c] for c in checks]
        # characters kept before the scan position for the detectors' look-behind
        self._context = max((d.context for d in self._dets), default=0) + 1
        self._orig = ""  # received text not yet emitted; starts at original index _obase
        self._obase = 0
        self._norm = ""  # normalised text from normalised index _nbase
        self._nbase = 0
        self._index: list[int] = []  # original index of each char of _norm
        self._npos = 0  # normalised index where the next scan starts (= end of emitted)
        self._received = 0
        self._matches: list[Match] = []
        self._out: list[str] = []
        self._state = "open"  # open, blocked, finished

    @property
    def blocked(self) -> bool:
        """True once a block rule matched."""
        return self._state == "blocked"

    def feed(self, delta: str) -> StreamStep:
        """Add `delta`; return what can be sent now (possibly nothing). After a block or
        finish() it returns nothing more (blocked stays True after a block)."""
        if self._state != "open":
            return StreamStep("", None, self.blocked)
        if not delta:
            return StreamStep("")
        n = normalize(delta)
        o = self._received
        self._orig += delta
        self._norm += n.text
        if n.index is None:
            self._index.extend(range(o, o + len(delta)))
        else:
            self._index.extend(o + i for i in n.index)
        self._received += len(delta)
        return self._step(final=False)

    def finish(self) -> StreamStep:
        """The end of the stream: flush the held-back tail (masked), or block; the step's
        verdict covers the whole stream."""
        if self._state != "open":
            return StreamStep("", None, self.blocked)
        return self._step(final=True)

    def _step(self, final: bool) -> StreamStep:
        text = self._norm
        pos = self._npos - self._nbase
        if final:
            stable = len(text)
        else:
            stable = min((d.stable_before(text) for d in self._dets), default=len(text))
            if stable <= pos:
                return StreamStep("")
        hits = self._engine.scan(self._direction, text, pos)
        decided = {c: [h for h in hs if h.start < stable] for c, hs in hits.items()}
        view = Normalized(text, self._index)
        new = self._engine.matches(self._direction, decided, view)
        if any(m.action == "block" for m in new):
            self._matches += new
            self._state = "blocked"
            return StreamStep("", make_verdict(self._matches, "".join(self._out)), True)
        cut = len(text) if final else _cut_before(stable, decided)
        if cut <= pos:
            return StreamStep("")
        if not final:
            decided = {c: [h for h in hs if h.start < cut] for c, hs in decided.items()}
            new = self._engine.matches(self._direction, decided, view)
        ocut = self._index[cut] if cut < len(text) else self._received
        masks = [(m.start, m.end, m.category) for m in new if m.action == "mask"]
        emit = apply_masks(self._orig[: ocut - self._obase], masks, offset=self._obase)
        self._matches += new
        self._out.append(emit)
        self._orig = self._orig[ocut - self._obase :]
        self._obase = ocut
        self._npos = self._nbase + cut
        drop = max(0, cut - self._context)
        self._norm = text[drop:]
        del self._index[:drop]
        self._nbase += drop
        if final:
            self._state = "finished"
            return StreamStep(emit, make_verdict(self._matches, "".join(self._out)))
        return StreamStep(emit)


def _cut_before(limit: int, hits: dict[str, list[Hit]]) -> int:
    """The furthest point <= `limit` that is neither inside nor right at the end of a hit."""
    spans = [(h.start, h.end) for hs in hits.values() for h in hs]
    cut = limit
    moved = True
    while moved:
        moved = False
        for s, e in spans:
            if s < cut <= e:
                cut = s
                moved = True
    return cut
