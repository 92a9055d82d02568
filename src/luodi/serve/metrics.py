"""Prometheus metrics of one gateway (a registry per app, so tests and apps don't mix).

Labels stay low-cardinality: endpoint, deployment, the model version that served, status
class and error type; never keys or users.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class _BackendCollector(Collector):
    """Queue depth and in-flight requests per served version, read at scrape time."""

    def __init__(self, stats: Callable[[], dict[str, dict[str, float]]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        queue = GaugeMetricFamily(
            "luodi_queue_depth", "Requests waiting for a backend", labels=["model_version"]
        )
        inflight = GaugeMetricFamily(
            "luodi_inflight_requests", "Requests being served", labels=["model_version"]
        )
        for version, s in self._stats().items():
            queue.add_metric([version], float(s.get("queue_depth", 0)))
            inflight.add_metric([version], float(s.get("inflight", 0)))
        yield queue
        yield inflight


class AlertCollector(Collector):
    """The state of the alert rules (`serve.monitor`) as of the latest check, read at scrape
    time: `luodi_alert{rule}` 1 when breached else 0, and the measured value (absent when
    it could not be measured). One label, the rule name: as many series as rules."""

    def __init__(self, states: Callable[[], list[tuple[str, bool, float | None]]]) -> None:
        self._states = states

    def collect(self) -> Iterator[GaugeMetricFamily]:
        alert = GaugeMetricFamily(
            "luodi_alert", "1 when the alert rule is breached, else 0", labels=["rule"]
        )
        value = GaugeMetricFamily(
            "luodi_alert_value", "The value the alert rule last measured", labels=["rule"]
        )
        for rule, breached, measured in self._states():
            alert.add_metric([rule], 1.0 if breached else 0.0)
            if measured is not None:
                value.add_metric([rule], float(measured))
        yield alert
        yield value


class Metrics:
    """The gateway's counters and histograms."""

    def __init__(self, backend_stats: Callable[[], dict[str, dict[str, float]]]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "luodi_requests",
            "Requests by endpoint, deployment, serving version and status",
            ["endpoint", "deployment", "model_version", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "luodi_request_latency_seconds",
            "Total request latency",
            ["endpoint", "model_version"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "luodi_time_to_first_token_seconds",
            "Time to the first streamed token",
            ["model_version"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "luodi_tokens",
            "Tokens in (prompt) and out (completion)",
            ["direction", "model_version"],
            registry=r,
        )
        self.errors = Counter(
            "luodi_errors", "Error responses by type", ["endpoint", "type"], registry=r
        )
        self.guard = Counter(
            "luodi_guard_verdicts",
            "Guard verdicts other than allow, by direction, action and category",
            ["direction", "action", "category"],
            registry=r,
        )
        self.canary_rollbacks = Counter(
            "luodi_canary_rollbacks",
            "Canaries the gateway rolled back by itself (significantly worse than production)",
            ["deployment"],
            registry=r,
        )
        r.register(_BackendCollector(backend_stats))

    def render(self) -> bytes:
        """The exposition text for /metrics."""
        return generate_latest(self.registry)
