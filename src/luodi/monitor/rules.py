"""Alert rules: thresholds on the service's signals and drift, checked by `luodi monitor check`
and, periodically, by the gateway (`serve.monitor`), which shows the state on /metrics.

A rules file (YAML; see examples/monitor/rules.yaml):

    # luodi monitor check --rules rules.yaml
    rules:
      - {name: high-error-rate, metric: error_rate, op: ">", value: 0.05,
         deployment: support, window: 1h, min_requests: 20}
    cost: {in_per_1k: 0.002, out_per_1k: 0.006, currency: CNY}   # for `monitor report`

Each rule measures one metric (METRICS: its name, what it is over) over the last `window`
for one deployment and/or model version (all when unset). A rule is judged only when the
window holds at least `min_requests` requests and the metric's own sample (ratings for the
feedback metrics, logged requests for the guard rate, prompts for drift) is at least
`min_samples`; otherwise it is "not judged" and not breached: three requests with one error
are not a 33% error rate worth waking someone for.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from luodi.errors import BadInputError, LuodiError
from luodi.monitor import drift as D
from luodi.monitor.signals import Signals, SignalsReport, compute_signals, parse_duration
from luodi.registry import Registry
from luodi.store import Store
from luodi.yamlio import read_yaml

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")
DRIFT_FIELDS = ("reference", "embedder", "sample")
OOD_FIELDS = ("kb", "min_score", "sample")


@dataclass(frozen=True)
class Measured:
    """A metric's value (None: no data) and the sample it is over (None: a count, no sample)."""

    value: float | None
    samples: int | None


@dataclass(frozen=True)
class Metric:
    """A measurable metric: what it means and how one rule measures it."""

    description: str
    measure: Callable[[Context, Rule], Measured]
    fields: tuple[str, ...] = ()
    """Rule fields only this metric reads (kb, reference, ...)."""
    required: tuple[str, ...] = ()


METRICS: Registry[Metric] = Registry("metric")


class Rule(BaseModel):
    """One alert rule."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Rule name (letters, digits, '_', '.', '-'); the alert label.")
    metric: str = Field(description="What to measure: one of METRICS (see `luodi monitor check`).")
    op: Literal[">", ">=", "<", "<="] = Field(description="Breached when `metric op value`.")
    value: float = Field(description="The threshold.")
    deployment: str | None = Field(default=None, description="Only this deployment (default all).")
    model_version: str | None = Field(
        default=None, description="Only requests this model version served (default all)."
    )
    window: str = Field(default="1h", description="Look back this far: 30m, 1h, 1d, 7d...")
    min_requests: int = Field(
        default=0, ge=0, description="Judge only when the window holds this many requests."
    )
    min_samples: int = Field(
        default=1,
        ge=0,
        description="Judge only when the metric's own sample (requests, logged requests, "
        "ratings or prompts) is this large.",
    )
    description: str | None = Field(default=None, description="What the alert means, for people.")
    reference: str | None = Field(
        default=None,
        description="prompt_drift*: the reference dataset (default: the training data of the "
        "version that served).",
    )
    embedder: str = Field(default=D.DEFAULT_EMBEDDER, description="prompt_drift*: embedder.")
    sample: int = Field(
        default=D.DEFAULT_SAMPLE, ge=2, le=20_000, description="Drift metrics: prompts sampled."
    )
    kb: str | None = Field(default=None, description="ood_rate: the knowledge base to check.")
    min_score: float | None = Field(
        default=None, description="ood_rate: relevance threshold (default: the embedder's)."
    )

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(str(k) for k in data if k not in cls.model_fields)
            if unknown:
                raise ValueError(
                    f"unknown key(s) {', '.join(unknown)}; valid keys: "
                    f"{', '.join(cls.model_fields)}"
                )
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("use 1-80 letters, digits, '_', '.' or '-'")
        return v

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        if v not in METRICS:
            raise ValueError(f"unknown metric {v!r}; valid metrics: {', '.join(METRICS.names())}")
        return v

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        try:
            parse_duration(v)
        except BadInputError as exc:
            raise ValueError(exc.message) from None
        return v

    @model_validator(mode="after")
    def _metric_fields(self) -> Rule:
        m = METRICS.get(self.metric)
        for f in m.required:
            if getattr(self, f) is None:
                raise ValueError(f"metric {self.metric} needs `{f}`")
        specific = {f for other in METRICS.names() for f in METRICS.get(other).fields}
        for f in sorted(specific - set(m.fields)):
            if f in self.model_fields_set:
                raise ValueError(f"`{f}` does not apply to metric {self.metric}")
        return self

    @property
    def span(self) -> timedelta:
        """The window as a timedelta."""
        return parse_duration(self.window)


class Cost(BaseModel):
    """Per-token prices for the ROI view of `luodi monitor report`."""

    model_config = ConfigDict(extra="forbid")

    in_per_1k: float = Field(default=0.0, ge=0, description="Price of 1000 prompt tokens.")
    out_per_1k: float = Field(default=0.0, ge=0, description="Price of 1000 completion tokens.")
    currency: str = Field(default="", description="Currency label shown with costs (e.g. CNY).")


class RulesFile(BaseModel):
    """A rules file: alert rules and, optionally, token prices."""

    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(default_factory=list, description="The alert rules.")
    cost: Cost | None = Field(default=None, description="Token prices for the ROI view.")

    @model_validator(mode="after")
    def _unique(self) -> RulesFile:
        names = [r.name for r in self.rules]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(dup)}")
        return self


def _problems(exc: ValidationError, raw: Any) -> str:
    out = []
    for e in exc.errors():
        loc = list(e["loc"])
        where = ".".join(str(p) for p in loc) or "file"
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            try:
                where = f"rule {raw['rules'][loc[1]].get('name', loc[1])!r}" + "".join(
                    f".{p}" for p in loc[2:]
                )
            except (KeyError, IndexError, TypeError, AttributeError):
                pass
        msg = str(e["msg"]).removeprefix("Value error, ")
        out.append(f"{where}: {msg}")
    return "; ".join(out)


def parse_rules(raw: Any, source: str = "rules") -> RulesFile:
    """Validate a parsed rules document; BadInputError naming each bad rule and field."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise BadInputError(f"{source}: expected a mapping with `rules:` (and `cost:`)")
    unknown = sorted(str(k) for k in raw if k not in RulesFile.model_fields)
    if unknown:
        raise BadInputError(
            f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: "
            f"{', '.join(RulesFile.model_fields)}"
        )
    try:
        return RulesFile.model_validate(raw)
    except ValidationError as exc:
        raise BadInputError(f"{source}: {_problems(exc, raw)}") from None


def load_rules(path: Path | str) -> RulesFile:
    """Read and validate a rules YAML file."""
    return parse_rules(read_yaml(path, "rules file"), str(path))


class RuleResult(BaseModel):
    """One rule's outcome."""

    name: str = Field(description="Rule name.")
    metric: str = Field(description="Metric measured.")
    op: str = Field(description="Comparison.")
    threshold: float = Field(description="The rule's value.")
    deployment: str | None = Field(description="Deployment it watches (None: all).")
    model_version: str | None = Field(description="Model version it watches (None: all).")
    window: str = Field(description="Window it looks back over.")
    value: float | None = Field(description="The measured value (None: no data or error).")
    requests: int | None = Field(description="Requests in the window (None when unmeasured).")
    samples: int | None = Field(description="The sample the value is over.")
    judged: bool = Field(description="Enough data to judge (see min_requests / min_samples).")
    breached: bool = Field(description="Judged and `value op threshold` holds.")
    error: str | None = Field(default=None, description="Why it could not be measured.")
    why: str = Field(description="One line a person can read.")


class CheckResult(BaseModel):
    """All rules' outcomes at one time."""

    at: datetime = Field(description="When the check ran (UTC): windows end here.")
    results: list[RuleResult] = Field(description="One per rule, in file order.")

    @property
    def breached(self) -> list[RuleResult]:
        """The rules that are breached."""
        return [r for r in self.results if r.breached]

    @property
    def errors(self) -> list[RuleResult]:
        """The rules that could not be measured."""
        return [r for r in self.results if r.error]


class Context:
    """Shares work between rules of one check: one signals pass per window and scope."""

    def __init__(self, store: Store, now: datetime) -> None:
        self.store, self.now = store, now
        self._signals: dict[tuple[Any, ...], SignalsReport] = {}
        self._prompts: dict[tuple[Any, ...], list[str]] = {}

    def signals(self, rule: Rule) -> Signals:
        """The signals of the rule's window, deployment and version."""
        key = (rule.window, rule.deployment, rule.model_version)
        if key not in self._signals:
            self._signals[key] = compute_signals(
                self.store, self.now - rule.span, self.now, rule.deployment, rule.model_version
            )
        return self._signals[key].find(rule.deployment, rule.model_version)

    def prompts(self, rule: Rule) -> list[str]:
        """A sample of the user text of the window's prompts."""
        key = (rule.window, rule.deployment, rule.model_version, rule.sample)
        if key not in self._prompts:
            rows = D.recent_prompts(
                self.store,
                self.now - rule.span,
                self.now,
                rule.deployment,
                rule.model_version,
                rule.sample,
            )
            self._prompts[key] = [t for _, t in rows]
        return self._prompts[key]


def _signal(attr: str, sample: str | None, description: str) -> None:
    def measure(ctx: Context, rule: Rule) -> Measured:
        s = ctx.signals(rule)
        value = getattr(s, attr)
        return Measured(
            None if value is None else float(value), None if sample is None else getattr(s, sample)
        )

    METRICS.add(attr, Metric(description, measure))


_signal("requests", None, "requests served")
_signal("error_rate", "requests", "share of requests ending with a status >= 500")
_signal("client_error_rate", "requests", "share of requests ending with a status 400-499")
_signal("latency_p50_ms", "requests", "median latency (ms)")
_signal("latency_p95_ms", "requests", "95th percentile latency (ms)")
_signal("ttft_p95_ms", "requests", "95th percentile time to first token (ms), streamed requests")
_signal("prompt_tokens", None, "prompt tokens")
_signal("completion_tokens", None, "completion tokens")
_signal("tokens", None, "prompt + completion tokens")
_signal("guard_block_rate", "logged", "share of logged requests a guard blocked")
_signal("negative_feedback_rate", "rated", "share of ratings below 0.5")
_signal("mean_rating", "rated", "mean rating on 0-1")


def _drift(attr: str) -> Callable[[Context, Rule], Measured]:
    def measure(ctx: Context, rule: Rule) -> Measured:
        r = D.prompt_drift(
            ctx.store,
            ctx.now - rule.span,
            ctx.now,
            deployment=rule.deployment,
            model_version=rule.model_version,
            reference=rule.reference,
            embedder=rule.embedder,
            sample=rule.sample,
        )
        return Measured(getattr(r, attr), r.prompts)

    return measure


METRICS.add(
    "prompt_drift",
    Metric("1 - cos of recent vs reference prompt centroids", _drift("distance"), DRIFT_FIELDS),
)
METRICS.add(
    "prompt_drift_ratio",
    Metric("prompt_drift / its sampling-noise baseline (~1: none)", _drift("ratio"), DRIFT_FIELDS),
)


def _ood(ctx: Context, rule: Rule) -> Measured:
    assert rule.kb is not None  # required by the rule's validation
    r = D.ood_rate(ctx.store, rule.kb, ctx.prompts(rule), rule.min_score)
    return Measured(r.rate, r.prompts)


METRICS.add(
    "ood_rate",
    Metric("share of prompts the knowledge base has nothing on", _ood, OOD_FIELDS, ("kb",)),
)


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}"


def _judge(ctx: Context, rule: Rule) -> RuleResult:
    base = {
        "name": rule.name,
        "metric": rule.metric,
        "op": rule.op,
        "threshold": rule.value,
        "deployment": rule.deployment,
        "model_version": rule.model_version,
        "window": rule.window,
    }
    scope = f"{rule.deployment or 'all deployments'}"
    if rule.model_version:
        scope += f" / {rule.model_version}"
    try:
        requests = ctx.signals(rule).requests
        m = METRICS.get(rule.metric).measure(ctx, rule)
    except LuodiError as exc:
        return RuleResult(
            **base,
            value=None,
            requests=None,
            samples=None,
            judged=False,
            breached=False,
            error=exc.message,
            why=f"cannot measure {rule.metric}: {exc.message}",
        )
    judged = requests >= rule.min_requests and (m.samples is None or m.samples >= rule.min_samples)
    judged = judged and m.value is not None
    breached = judged and OPS[rule.op](m.value, rule.value)  # type: ignore[arg-type]
    head = f"{rule.metric} = {_fmt(m.value)} over the last {rule.window} of {scope}"
    if not judged:
        need = f"{requests} requests (min {rule.min_requests})"
        if m.samples is not None:
            need += f", sample {m.samples} (min {rule.min_samples})"
        why = f"not judged: {head}; {need}"
    elif breached:
        why = f"BREACHED: {head} {rule.op} {_fmt(rule.value)}"
    else:
        why = f"ok: {head}, threshold {rule.op} {_fmt(rule.value)}"
    return RuleResult(
        **base,
        value=m.value,
        requests=requests,
        samples=m.samples,
        judged=judged,
        breached=breached,
        why=why,
    )


def check(
    store: Store, rules: RulesFile | Sequence[Rule], now: datetime | None = None
) -> CheckResult:
    """Judge every rule over its window ending at `now` (default: the current time). A rule
    that cannot be measured (an unknown knowledge base, no reference dataset) is reported with
    its error; the others are still judged."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    items = rules.rules if isinstance(rules, RulesFile) else list(rules)
    ctx = Context(store, now)
    return CheckResult(at=now, results=[_judge(ctx, r) for r in items])
