"""Guarded canary: compare a deployment's canary with production while it runs, and say when
the canary is significantly worse so the gateway can shift its traffic back by itself.

For each deployment version with at least two live routes, `CanaryWatch` keeps a sliding
window of outcomes per served model version (the last `window` requests and/or `window_s`
seconds): server errors, output-guard blocks, latency of the answered requests, and the ratings
that arrive later through POST /v1/feedback (a bounded map request id → version joins them).
The canary is the route with the smallest non-zero weight (the later one on a tie) and
production the route with the largest weight (the earlier one on a tie).

Every few outcomes it judges each enabled signal, once both sides have enough samples:
rates (errors, guard blocks, negative feedback) with a one-sided Fisher exact test, latency
with a one-sided Mann-Whitney U test plus a p95 ratio. A signal fires only when the test is
significant at alpha / (number of signals) (Bonferroni) AND the gap is large enough to matter
(`min_rate_gap`, `latency_ratio`, `latency_min_ms`): a looked-at-repeatedly sliding window
would otherwise raise the false-positive rate above alpha, and a tiny but significant gap is
not worth pulling a release for. A deployment version is judged worse at most once.

The watch runs on the gateway's event loop (records and feedback arrive there), so it holds no
locks; its statistics are plain Python/numpy (no scipy import on the serving path) and are
checked against scipy in the tests.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from luodi.registry import Registry

if TYPE_CHECKING:
    from luodi.serve.deployments import DeploymentInfo, DeploymentSpec


# -- statistics --------------------------------------------------------------------------------
def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_greater(bad_a: int, n_a: int, bad_b: int, n_b: int) -> float:
    """One-sided Fisher exact p-value that side A's rate of `bad` is greater than side B's.

    Under equal rates, A's bad count given the total bad count is hypergeometric; the p-value
    is P(X >= bad_a). Equals scipy.stats.fisher_exact([[bad_a, n_a - bad_a], [bad_b, n_b -
    bad_b]], alternative="greater").pvalue.
    """
    if not (0 <= bad_a <= n_a and 0 <= bad_b <= n_b):
        raise ValueError("counts must satisfy 0 <= bad <= n")
    n, k = n_a + n_b, bad_a + bad_b
    if n == 0 or k == 0:
        return 1.0
    top = min(k, n_a)
    denom = _log_comb(n, n_a)
    terms = [_log_comb(k, x) + _log_comb(n - k, n_a - x) - denom for x in range(bad_a, top + 1)]
    peak = max(terms)
    return min(1.0, math.exp(peak) * sum(math.exp(t - peak) for t in terms))


def _average_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks 1..n with ties given their average rank, and the size of each tie group."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    average = ends - (counts - 1) / 2.0
    return average[inverse], counts


def mann_whitney_greater(a: Sequence[float], b: Sequence[float]) -> float:
    """One-sided Mann-Whitney U p-value that values of A tend to be greater than B's.

    The normal approximation with tie and continuity corrections; equals
    scipy.stats.mannwhitneyu(a, b, alternative="greater", method="asymptotic").pvalue.
    """
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        return 1.0
    ranks, ties = _average_ranks(np.concatenate([np.asarray(a, float), np.asarray(b, float)]))
    u1 = float(ranks[:n1].sum()) - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    tie_term = float((ties**3 - ties).sum()) / (n * (n - 1)) if n > 1 else 0.0
    var = n1 * n2 / 12.0 * ((n + 1) - tie_term)
    if var <= 0:  # every value equal: no evidence either way
        return 1.0
    z = (u1 - n1 * n2 / 2.0 - 0.5) / math.sqrt(var)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


# -- settings ----------------------------------------------------------------------------------
class CanaryGuardSettings(BaseModel):
    """When the gateway pulls a canary's traffic back to production by itself."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        default=True,
        description="Watch the canary while the deployment has at least two live routes.",
    )
    window: int = Field(
        default=300, ge=10, description="Judge the last N requests (and ratings) of each side."
    )
    window_s: float | None = Field(
        default=1800.0,
        gt=0,
        description="Also forget outcomes older than this many seconds (null: count only).",
    )
    min_requests: int = Field(
        default=30,
        ge=5,
        description="Requests each side needs before errors, guard blocks or latency count.",
    )
    min_feedback: int = Field(
        default=20, ge=5, description="Ratings each side needs before feedback is judged."
    )
    alpha: float = Field(
        default=0.001,
        gt=0,
        lt=0.5,
        description="Significance level of each look, split evenly between the signals (the "
        "watch looks again every few requests, so keep it small).",
    )
    signals: list[str] = Field(
        default_factory=lambda: ["errors", "guard_blocks", "negative_feedback", "latency"],
        min_length=1,
        description="What to compare: errors, guard_blocks, negative_feedback, latency.",
    )
    min_rate_gap: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="A rate counts as worse only when the canary's is at least this much above.",
    )
    latency_ratio: float = Field(
        default=1.5,
        ge=1,
        description="Latency counts as worse only when the canary's p95 is "
        "at least this many times production's.",
    )
    latency_min_ms: float = Field(
        default=50.0, ge=0, description="…and at least this many milliseconds above it."
    )
    negative_below: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="A rating (normalised to 0-1) below this is negative feedback.",
    )
    check_every: int = Field(
        default=5, ge=1, description="Judge after every N new outcomes of the deployment."
    )

    @field_validator("signals")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = [s for s in v if s not in SIGNALS]
        if unknown:
            raise ValueError(f"unknown signals {unknown}; known: {', '.join(SIGNALS.names())}")
        return list(dict.fromkeys(v))


# -- windows and findings ------------------------------------------------------------------------
@dataclass
class Outcome:
    """One finished request of a served version."""

    at: float
    error: bool
    blocked: bool
    latency_ms: float | None


@dataclass
class Side:
    """The sliding window of one served version in one deployment version."""

    served: str
    outcomes: deque[Outcome]
    ratings: deque[tuple[float, bool]]  # (time, negative)

    @classmethod
    def empty(cls, served: str, window: int) -> Side:
        return cls(served, deque(maxlen=window), deque(maxlen=window))

    def prune(self, before: float | None) -> None:
        if before is None:
            return
        while self.outcomes and self.outcomes[0].at < before:
            self.outcomes.popleft()
        while self.ratings and self.ratings[0][0] < before:
            self.ratings.popleft()


@dataclass
class Finding:
    """A signal on which the canary is significantly worse than production."""

    signal: str
    label: str
    canary: float
    production: float
    p_value: float
    n_canary: int
    n_production: int
    unit: str = ""

    def describe(self, canary: str, production: str) -> str:
        """One line for the deployment's history: both sides' values, sizes and the p-value."""
        fmt = (lambda v: f"{v:.0f} {self.unit}") if self.unit else (lambda v: f"{v:.2f}")
        return (
            f"canary {canary} {self.label} {fmt(self.canary)} vs {fmt(self.production)} on "
            f"production {production} (p={self.p_value:.1g}, n={self.n_canary} vs "
            f"{self.n_production})"
        )


Signal = Callable[[Side, Side, CanaryGuardSettings, float], Finding | None]
SIGNALS: Registry[Signal] = Registry("canary signal")


def _rate(
    signal: str, label: str, c: list[bool], p: list[bool], s: CanaryGuardSettings, alpha: float
) -> Finding | None:
    bad_c, bad_p = sum(c), sum(p)
    rate_c, rate_p = bad_c / len(c), bad_p / len(p)
    if rate_c - rate_p < max(s.min_rate_gap, 1e-12):
        return None
    pv = fisher_greater(bad_c, len(c), bad_p, len(p))
    return Finding(signal, label, rate_c, rate_p, pv, len(c), len(p)) if pv < alpha else None


@SIGNALS.register("errors")
def _errors(c: Side, p: Side, s: CanaryGuardSettings, alpha: float) -> Finding | None:
    """Server errors (status >= 500) among all requests."""
    if min(len(c.outcomes), len(p.outcomes)) < s.min_requests:
        return None
    return _rate(
        "errors",
        "error rate",
        [o.error for o in c.outcomes],
        [o.error for o in p.outcomes],
        s,
        alpha,
    )


@SIGNALS.register("guard_blocks")
def _guard_blocks(c: Side, p: Side, s: CanaryGuardSettings, alpha: float) -> Finding | None:
    """Replies the output guard blocked, among answered requests."""
    cb = [o.blocked for o in c.outcomes if not o.error]
    pb = [o.blocked for o in p.outcomes if not o.error]
    if min(len(cb), len(pb)) < s.min_requests:
        return None
    return _rate("guard_blocks", "guard-block rate", cb, pb, s, alpha)


@SIGNALS.register("negative_feedback")
def _negative(c: Side, p: Side, s: CanaryGuardSettings, alpha: float) -> Finding | None:
    """Negative ratings among the rated requests."""
    if min(len(c.ratings), len(p.ratings)) < s.min_feedback:
        return None
    return _rate(
        "negative_feedback",
        "negative-feedback rate",
        [n for _, n in c.ratings],
        [n for _, n in p.ratings],
        s,
        alpha,
    )


@SIGNALS.register("latency")
def _latency(c: Side, p: Side, s: CanaryGuardSettings, alpha: float) -> Finding | None:
    """Latency of answered requests: p95 well above production's and stochastically greater."""
    lc = [o.latency_ms for o in c.outcomes if o.latency_ms is not None]
    lp = [o.latency_ms for o in p.outcomes if o.latency_ms is not None]
    if min(len(lc), len(lp)) < s.min_requests:
        return None
    p95_c, p95_p = float(np.percentile(lc, 95)), float(np.percentile(lp, 95))
    if p95_c < s.latency_ratio * p95_p or p95_c - p95_p < s.latency_min_ms:
        return None
    pv = mann_whitney_greater(lc, lp)
    if pv >= alpha:
        return None
    return Finding("latency", "latency p95", p95_c, p95_p, pv, len(lc), len(lp), unit="ms")


def judge(canary: Side, production: Side, settings: CanaryGuardSettings) -> Finding | None:
    """The first enabled signal on which `canary` is significantly worse, or None (also when
    a side has too few samples for a signal)."""
    alpha = settings.alpha / len(settings.signals)
    for name in settings.signals:
        found = SIGNALS.get(name)(canary, production, settings, alpha)
        if found is not None:
            return found
    return None


def roles(spec: DeploymentSpec) -> tuple[str, str] | None:
    """(canary served version, production served version) of a deployment, or None when it
    has fewer than two live routes (or both serve the same version)."""
    live = [(i, r) for i, r in enumerate(spec.routes) if r.weight > 0]
    if len(live) < 2:
        return None
    prod = max(live, key=lambda ir: (ir[1].weight, -ir[0]))
    canary = min((x for x in live if x is not prod), key=lambda ir: (ir[1].weight, -ir[0]))
    c, p = canary[1].served or canary[1].model, prod[1].served or prod[1].model
    return None if c == p else (c, p)


# -- the watch ---------------------------------------------------------------------------------
@dataclass
class Decision:
    """The canary of deployment version `ref` is significantly worse: roll it back."""

    deployment: str
    ref: str
    canary: str
    production: str
    finding: Finding

    @property
    def reason(self) -> str:
        return self.finding.describe(self.canary, self.production)


@dataclass
class _Tracked:
    info: DeploymentInfo
    canary: str
    production: str
    sides: dict[str, Side]
    events: int = 0
    decided: bool = False


def _version_no(ref: str) -> int:
    tail = ref.rsplit(":v", 1)[-1]
    return int(tail) if tail.isdigit() else -1


class CanaryWatch:
    """Sliding windows per (deployment version, served version) and the judgment on them.

    `observe` (every finished request) and `rate` (every rating) return a `Decision` the
    first time a deployment version's canary is found worse, else None. Only the newest
    deployment version of each name is tracked (requests still finishing on an older one
    are ignored), so a new apply starts with fresh windows.
    """

    def __init__(self, max_requests: int = 50_000, clock: Callable[[], float] = time.monotonic):
        self._tracked: dict[str, _Tracked] = {}
        self._requests: OrderedDict[str, tuple[str, str, str]] = OrderedDict()
        self._max_requests = max_requests
        self._clock = clock

    def _track(self, info: DeploymentInfo) -> _Tracked | None:
        s = info.spec.canary_guard
        name = info.spec.name
        t = self._tracked.get(name)
        if t is not None and t.info.ref == info.ref:
            return t
        if t is not None and _version_no(info.ref) < _version_no(t.info.ref):
            return None  # an in-flight request of a version already replaced
        pair = roles(info.spec) if s.enabled else None
        if pair is None:
            self._tracked.pop(name, None)
            return None
        sides = {v: Side.empty(v, s.window) for v in pair}
        t = self._tracked[name] = _Tracked(info, pair[0], pair[1], sides)
        return t

    def observe(
        self,
        info: DeploymentInfo,
        served: str,
        request_id: str,
        status: int,
        latency_ms: float,
        guard_log: Sequence[dict[str, Any]] = (),
    ) -> Decision | None:
        """Count a finished request. Client-side outcomes (4xx, 499) say nothing about the
        model and are skipped; status >= 500 is an error; an answered request adds its latency
        and whether the output guard blocked its reply."""
        t = self._track(info)
        if t is None or served not in t.sides or 400 <= status < 500:
            return None
        error = status >= 500
        blocked = any(
            g.get("direction") == "output" and g.get("action") == "block" for g in guard_log
        )
        now = self._clock()
        t.sides[served].outcomes.append(
            Outcome(now, error, blocked and not error, None if error else latency_ms)
        )
        self._requests[request_id] = (info.spec.name, info.ref, served)
        while len(self._requests) > self._max_requests:
            self._requests.popitem(last=False)
        return self._maybe_judge(t, now)

    def rate(self, request_id: str, rating: float | None) -> Decision | None:
        """Count a rating (0-1) of a request this gateway served recently (the first rating
        of a request counts; others and unknown requests are ignored)."""
        if rating is None:
            return None
        hit = self._requests.pop(request_id, None)
        if hit is None:
            return None
        name, ref, served = hit
        t = self._tracked.get(name)
        if t is None or t.info.ref != ref:
            return None
        now = self._clock()
        t.sides[served].ratings.append((now, rating < t.info.spec.canary_guard.negative_below))
        return self._maybe_judge(t, now)

    def _maybe_judge(self, t: _Tracked, now: float) -> Decision | None:
        t.events += 1
        s = t.info.spec.canary_guard
        if t.decided or t.events % s.check_every:
            return None
        c, p = t.sides[t.canary], t.sides[t.production]
        before = now - s.window_s if s.window_s is not None else None
        c.prune(before)
        p.prune(before)
        found = judge(c, p, s)
        if found is None:
            return None
        t.decided = True
        return Decision(t.info.spec.name, t.info.ref, t.canary, t.production, found)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per watched deployment: its version, roles and each side's window sizes."""
        return {
            name: {
                "ref": t.info.ref,
                "canary": t.canary,
                "production": t.production,
                "decided": t.decided,
                "requests": {v: len(sd.outcomes) for v, sd in t.sides.items()},
                "ratings": {v: len(sd.ratings) for v, sd in t.sides.items()},
            }
            for name, t in self._tracked.items()
        }
