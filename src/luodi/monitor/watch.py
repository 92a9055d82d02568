"""The gateway's periodic alert check (`serve.monitor` in deploy.yaml): a background task runs
`rules.check` every `interval_s` seconds in a worker thread (the check reads the database and
may embed prompts; the event loop keeps serving) and keeps the latest result, which /metrics
shows as `luodi_alert{rule}` (0/1) and `luodi_alert_value{rule}`."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import CollectorRegistry

from luodi.monitor.config import MonitorConfig
from luodi.monitor.rules import CheckResult, RulesFile, check, load_rules
from luodi.store import Store

log = logging.getLogger("luodi.monitor")


class AlertWatcher:
    """Runs the rules every `interval_s` seconds; `latest` is the newest result."""

    def __init__(self, store: Store, rules: RulesFile, interval_s: float) -> None:
        self.store, self.rules, self.interval_s = store, rules, interval_s
        self.latest: CheckResult | None = None
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start checking in the background."""
        self._task = asyncio.create_task(self._run(), name="luodi-alert-check")

    async def stop(self) -> None:
        """Stop checking (a check already running in its thread is left to finish)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_once(self) -> CheckResult | None:
        """One check now; a failure is logged and counted, and the previous result kept."""
        try:
            self.latest = await asyncio.to_thread(check, self.store, self.rules)
        except Exception:  # the gateway must keep serving whatever the check does
            self.failures += 1
            log.exception("alert check failed")
        else:
            for r in self.latest.breached:
                log.warning("alert %s: %s", r.name, r.why)
        return self.latest

    async def _run(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self.interval_s)

    def states(self) -> list[tuple[str, bool, float | None]]:
        """(rule, breached, value) of the latest check; [] before the first."""
        if self.latest is None:
            return []
        return [(r.name, r.breached, r.value) for r in self.latest.results]


def alert_watcher(
    store: Store, config: MonitorConfig | None, registry: CollectorRegistry
) -> AlertWatcher | None:
    """The watcher `config` asks for (None when monitoring is off), its alert state
    registered on `registry`. BadInputError when the rules file is missing or wrong, so a
    server with a broken monitor config does not start."""
    if config is None:
        return None
    from luodi.serve.metrics import AlertCollector

    watcher = AlertWatcher(store, load_rules(config.rules), config.interval_s)
    registry.register(AlertCollector(watcher.states))
    return watcher
