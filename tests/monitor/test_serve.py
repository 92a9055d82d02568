"""The gateway checks alert rules periodically (serve.monitor) and shows their state on
/metrics: a deliberately flaky deployment breaches an error-rate rule after real traffic."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest

from luodi.config import Settings
from luodi.errors import BadInputError
from luodi.store import Store
from tests.serve.conftest import fake_route, gateway


def _metric(text: str, name: str, rule: str) -> float | None:
    prefix = f'{name}{{rule="{rule}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return None


def _wait_for(fetch, want, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        got = fetch()
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_breached_rule_shows_on_metrics(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "# luodi monitor check --rules rules.yaml\nrules:\n"
        "  - {name: chat-errors, metric: error_rate, op: '>', value: 0.2, deployment: chat,"
        " window: 1h, min_requests: 4}\n"
        "  - {name: chat-slow, metric: latency_p95_ms, op: '>', value: 60000, deployment: chat}\n",
        encoding="utf-8",
    )
    deployments = [{"name": "chat", "routes": [fake_route("flaky50")]}]
    monitor = {"rules": str(rules), "interval_s": 0.2}
    with gateway(tmp_path / "home", deployments, monitor=monitor) as g:
        with g.http() as http:

            def state() -> float | None:
                return _metric(http.get("/metrics").text, "luodi_alert", "chat-errors")

            # no traffic yet: checked, not judged (0 of min 4 requests), so not breached
            assert _wait_for(state, 0.0) == 0.0
            client = g.client()
            failed = 0
            for i in range(6):
                try:
                    client.chat.completions.create(
                        model="chat", messages=[{"role": "user", "content": f"q{i}"}]
                    )
                except openai.APIStatusError as exc:
                    assert exc.status_code == 502
                    failed += 1
            assert failed == 3
            assert _wait_for(state, 1.0) == 1.0
            text = http.get("/metrics").text
        assert _metric(text, "luodi_alert_value", "chat-errors") == pytest.approx(0.5)
        assert _metric(text, "luodi_alert", "chat-slow") == 0.0
        assert _metric(text, "luodi_alert_value", "chat-slow") is not None


def test_bad_rules_file_stops_the_server(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {name: x, metric: nope, op: '>', value: 1}\n")
    store = Store(Settings(home=tmp_path / "home"))
    with pytest.raises(BadInputError, match="unknown metric 'nope'"):
        with gateway(tmp_path / "home", store=store, monitor={"rules": str(rules)}):
            pass
    store.close()
