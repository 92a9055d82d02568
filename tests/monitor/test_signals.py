"""Signals and alert rules over known records, on SQLite and PostgreSQL; expected values are
recomputed from the seeded rows with numpy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from luodi.errors import BadInputError
from luodi.monitor.rules import check, parse_rules
from luodi.monitor.signals import compute_signals, parse_duration, signals_over_time
from luodi.store import Store
from tests.monitor.seed import Seeded, standard


def _expect(s: Seeded, since: datetime, dep: str | None, ver: str | None) -> dict:
    def keep(r: dict) -> bool:
        return (
            r["at"] >= since
            and (dep is None or r["deployment"] == dep)
            and (ver is None or r["model_version"] == ver)
        )

    usage = [r for r in s.usage if keep(r)]
    logs = [r for r in s.logs if keep(r)]
    served = {r["request_id"]: r for r in s.usage}
    fb = [
        f
        for f in s.feedback
        if f["at"] >= since
        and f["request_id"] in served
        and keep({**served[f["request_id"]], "at": f["at"]})
    ]
    ratings = [f["rating"] for f in fb if f["rating"] is not None]
    lat = [r["latency_ms"] for r in usage]
    ttft = [r["ttft_ms"] for r in usage if r["ttft_ms"] is not None]
    n = len(usage)
    return {
        "requests": n,
        "error_rate": sum(r["status"] >= 500 for r in usage) / n,
        "client_error_rate": sum(400 <= r["status"] < 500 for r in usage) / n,
        "latency_p50_ms": float(np.percentile(lat, 50)),
        "latency_p95_ms": float(np.percentile(lat, 95)),
        "ttft_p95_ms": float(np.percentile(ttft, 95)) if ttft else None,
        "prompt_tokens": sum(r["prompt_tokens"] for r in usage),
        "completion_tokens": sum(r["completion_tokens"] for r in usage),
        "guard_block_rate": sum(any(v["action"] == "block" for v in r["guard"]) for r in logs)
        / len(logs),
        "feedback": len(fb),
        "rated": len(ratings),
        "negative_feedback_rate": (sum(x < 0.5 for x in ratings) / len(ratings))
        if ratings
        else None,
        "mean_rating": float(np.mean(ratings)) if ratings else None,
    }


def _assert_matches(row, want: dict) -> None:
    for k, v in want.items():
        got = getattr(row, k)
        if v is None:
            assert got is None, k
        else:
            assert got == pytest.approx(v), (k, got, v)


def test_signals_equal_hand_counts(any_store: Store) -> None:
    now = datetime.now(UTC)
    seeded = standard(any_store, now)
    hour = now - timedelta(hours=1)
    rep = compute_signals(any_store, hour, now)
    for dep, ver in [(None, None), ("support", None), ("support", "m:v1"), ("support", "m:v2")]:
        _assert_matches(rep.find(dep, ver), _expect(seeded, hour, dep, ver))
    v1 = rep.find("support", "m:v1")
    # hand-checked against the scenario: 1 of 10 is a 500, 1 a 429, 2 of 10 blocked
    assert (v1.requests, v1.server_errors, v1.client_errors, v1.guard_blocks) == (10, 1, 1, 2)
    assert (v1.rated, v1.negative, v1.feedback) == (3, 2, 4)
    assert v1.mean_rating == pytest.approx(1.25 / 3)
    assert rep.find("other", None).requests == 0  # 3 h ago: outside the hour
    day = compute_signals(any_store, now - timedelta(days=1), now)
    assert day.total.requests == 19
    assert day.find("other", "x:v1").latency_p95_ms == 50.0
    # a version alone (over all deployments) is findable, for rules naming only a version
    assert day.find(None, "m:v2").requests == 5


def test_signals_over_time_buckets(any_store: Store) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    standard(any_store, now)
    since = now - timedelta(hours=4)
    buckets = signals_over_time(any_store, since, now, timedelta(hours=1))
    assert [b.start for b in buckets] == [since + timedelta(hours=i) for i in range(4)]
    assert [b.total.requests for b in buckets] == [0, 4, 0, 15]
    assert buckets[1].deployments["other"].requests == 4
    assert buckets[3].deployments["support"].rated == 4
    whole = compute_signals(any_store, since, now).total
    assert sum(b.total.prompt_tokens for b in buckets) == whole.prompt_tokens
    assert sum(b.total.server_errors for b in buckets) == whole.server_errors == 2


def test_rules_breach_and_pass(any_store: Store) -> None:
    now = datetime.now(UTC)
    standard(any_store, now)
    spec = parse_rules(
        {
            "rules": [
                # support over 1 h: 2 server errors of 15 = 13.3%
                {
                    "name": "errors",
                    "metric": "error_rate",
                    "op": ">",
                    "value": 0.1,
                    "deployment": "support",
                    "window": "1h",
                },
                {
                    "name": "errors-loose",
                    "metric": "error_rate",
                    "op": ">",
                    "value": 0.2,
                    "deployment": "support",
                },
                # only 15 requests: not judged with min_requests 20
                {
                    "name": "errors-min",
                    "metric": "error_rate",
                    "op": ">",
                    "value": 0.1,
                    "deployment": "support",
                    "min_requests": 20,
                },
                {
                    "name": "slow",
                    "metric": "latency_p95_ms",
                    "op": ">=",
                    "value": 500,
                    "model_version": "m:v2",
                },
                {
                    "name": "unhappy",
                    "metric": "negative_feedback_rate",
                    "op": ">",
                    "value": 0.5,
                    "deployment": "support",
                    "model_version": "m:v1",
                    "min_samples": 3,
                },
                {
                    "name": "traffic-drop",
                    "metric": "requests",
                    "op": "<",
                    "value": 1,
                    "deployment": "other",
                    "window": "1h",
                },
                {"name": "blocked", "metric": "guard_block_rate", "op": ">", "value": 0.5},
            ]
        }
    )
    res = check(any_store, spec, now=now)
    by = {r.name: r for r in res.results}
    assert by["errors"].value == pytest.approx(2 / 15) and by["errors"].breached
    assert by["errors-loose"].judged and not by["errors-loose"].breached
    assert not by["errors-min"].judged and not by["errors-min"].breached
    assert "not judged" in by["errors-min"].why and "min 20" in by["errors-min"].why
    assert by["slow"].value == pytest.approx(np.percentile([200, 300, 400, 500, 600], 95))
    assert by["slow"].breached
    assert by["unhappy"].value == pytest.approx(2 / 3) and by["unhappy"].breached
    assert by["traffic-drop"].value == 0 and by["traffic-drop"].breached
    assert by["blocked"].value == pytest.approx(2 / 15) and not by["blocked"].breached
    assert {r.name for r in res.breached} == {"errors", "slow", "unhappy", "traffic-drop"}
    assert res.errors == []


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"metric": "errors"}, "valid metrics: client_error_rate"),
        ({"threshold": 1}, "unknown key(s) threshold; valid keys: name, metric"),
        ({"op": "=>"}, "op"),
        ({"window": "1y"}, "e.g. 30m, 1h"),
        ({"kb": "handbook"}, "`kb` does not apply to metric error_rate"),
        ({"metric": "ood_rate"}, "metric ood_rate needs `kb`"),
        ({"name": "has space"}, "letters, digits"),
    ],
)
def test_bad_rules_name_the_problem(rule: dict, message: str) -> None:
    good = {"name": "r1", "metric": "error_rate", "op": ">", "value": 0.1}
    with pytest.raises(BadInputError) as exc:
        parse_rules({"rules": [{**good, **rule}]}, "rules.yaml")
    assert message in exc.value.message
    assert exc.value.message.startswith("rules.yaml: rule ")


def test_bad_rules_file_shapes() -> None:
    with pytest.raises(BadInputError, match="unknown key.*alerts.*valid keys: rules, cost"):
        parse_rules({"alerts": []})
    good = {"name": "r1", "metric": "error_rate", "op": ">", "value": 0.1}
    with pytest.raises(BadInputError, match="repeated: r1"):
        parse_rules({"rules": [good, good]})
    assert parse_duration("90m") == timedelta(minutes=90)
    with pytest.raises(BadInputError):
        parse_duration("0h")


def test_example_rules_file_is_valid(store: Store) -> None:
    from luodi.monitor.rules import load_rules
    from tests.conftest import EXAMPLES

    path = EXAMPLES / "monitor" / "rules.yaml"
    assert path.read_text(encoding="utf-8").startswith("# luodi monitor check --rules ")
    spec = load_rules(path)
    assert spec.cost is not None and spec.cost.currency == "CNY"
    # on a store with no traffic every rule that needs no knowledge base is simply not judged
    res = check(store, [r for r in spec.rules if r.kb is None])
    assert res.errors == [] and res.breached == []
    assert all(not r.judged for r in res.results)
