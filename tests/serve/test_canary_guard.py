"""Guarded canary: the statistics against scipy, the watch on simulated traffic, and a real
gateway that rolls a bad canary back by itself (and leaves a healthy one alone)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
from pydantic import ValidationError
from scipy import stats

from luodi.serve import deployments as D
from luodi.serve.canary import (
    CanaryGuardSettings,
    CanaryWatch,
    Outcome,
    Side,
    fisher_greater,
    judge,
    mann_whitney_greater,
    roles,
)
from tests.helpers import run_cli
from tests.serve.conftest import FAKE, Gw, fake_route, gateway

MSG = [{"role": "user", "content": "设备保修期是多久？"}]


# -- statistics ----------------------------------------------------------------------------------
def test_fisher_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        n_a, n_b = int(rng.integers(1, 80)), int(rng.integers(1, 400))
        bad_a, bad_b = int(rng.integers(0, n_a + 1)), int(rng.integers(0, n_b + 1))
        ref = stats.fisher_exact(
            [[bad_a, n_a - bad_a], [bad_b, n_b - bad_b]], alternative="greater"
        ).pvalue
        assert fisher_greater(bad_a, n_a, bad_b, n_b) == pytest.approx(ref, rel=1e-6, abs=1e-12)
    assert fisher_greater(0, 30, 0, 270) == 1.0
    with pytest.raises(ValueError):
        fisher_greater(5, 3, 0, 10)


def test_mann_whitney_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(1)
    for _ in range(100):
        a = rng.integers(0, 30, size=int(rng.integers(5, 60))).astype(float)  # many ties
        b = rng.integers(0, 30, size=int(rng.integers(5, 300))).astype(float) + rng.choice([0, 3])
        ref = stats.mannwhitneyu(a, b, alternative="greater", method="asymptotic").pvalue
        assert mann_whitney_greater(a, b) == pytest.approx(ref, rel=1e-9, abs=1e-12)
    assert mann_whitney_greater([5.0] * 10, [5.0] * 10) == 1.0


def _side(
    served: str,
    errors: list[bool],
    latency: list[float] | None = None,
    blocked: list[bool] | None = None,
    negative: list[bool] = (),  # type: ignore[assignment]
) -> Side:
    s = Side.empty(served, 10_000)
    for i, e in enumerate(errors):
        lat = None if e else (latency[i] if latency is not None else 10.0)
        s.outcomes.append(Outcome(0.0, e, bool(blocked and blocked[i]), lat))
    s.ratings.extend((0.0, n) for n in negative)
    return s


def test_a_clearly_worse_canary_is_flagged_on_each_signal() -> None:
    cfg = CanaryGuardSettings()
    ok = [False] * 270
    # errors: 15 of 30 failing against none of 270
    f = judge(_side("c", [True, False] * 15), _side("p", ok), cfg)
    assert f is not None and f.signal == "errors"
    assert (f.canary, f.production, f.n_canary, f.n_production) == (0.5, 0.0, 30, 270)
    assert f.p_value == pytest.approx(fisher_greater(15, 30, 0, 270))
    assert "error rate 0.50 vs 0.00" in f.describe("m:v2", "m:v1")
    # guard blocks: every canary reply blocked
    f = judge(_side("c", [False] * 40, blocked=[True] * 40), _side("p", ok), cfg)
    assert f is not None and f.signal == "guard_blocks" and f.canary == 1.0
    # latency: 300 ms against 10 ms
    f = judge(_side("c", [False] * 40, [300.0] * 40), _side("p", ok), cfg)
    assert f is not None and f.signal == "latency"
    assert (f.canary, f.production) == (300.0, 10.0) and "300 ms vs 10 ms" in f.describe("c", "p")
    # negative feedback: 15 of 20 ratings negative against 2 of 40
    neg_c, neg_p = [True] * 15 + [False] * 5, [True] * 2 + [False] * 38
    f = judge(_side("c", [False] * 40, negative=neg_c), _side("p", ok, negative=neg_p), cfg)
    assert f is not None and f.signal == "negative_feedback" and f.canary == 0.75


def test_too_few_samples_or_a_disabled_signal_decide_nothing() -> None:
    cfg = CanaryGuardSettings(min_requests=30)
    assert judge(_side("c", [True] * 29), _side("p", [False] * 500), cfg) is None
    assert judge(_side("c", [True] * 30), _side("p", [False] * 29), cfg) is None
    assert judge(_side("c", [True] * 30), _side("p", [False] * 30), cfg) is not None
    only_latency = CanaryGuardSettings(signals=["latency"])
    assert judge(_side("c", [True] * 40), _side("p", [False] * 40), only_latency) is None
    # a significant but tiny slowdown (12 ms vs 10 ms) is below latency_min_ms
    assert judge(_side("c", [False] * 99, [12.0] * 99), _side("p", [False] * 99), cfg) is None


@pytest.mark.parametrize("rate", [0.02, 0.1, 0.3])
def test_equal_sides_are_flagged_at_most_at_alpha(rate: float) -> None:
    """Over many seeds, a canary as good as production is flagged no more often than alpha."""
    cfg = CanaryGuardSettings(alpha=0.05, min_rate_gap=0.0, latency_min_ms=0.0, latency_ratio=1.0)
    rng = np.random.default_rng(int(rate * 100))
    flagged = 0
    runs = 400
    for _ in range(runs):
        errs_c, errs_p = rng.random(40) < rate, rng.random(300) < rate
        lat_c, lat_p = rng.lognormal(3, 0.5, 40), rng.lognormal(3, 0.5, 300)
        c = _side("c", list(errs_c), list(lat_c), blocked=list(rng.random(40) < rate))
        p = _side("p", list(errs_p), list(lat_p), blocked=list(rng.random(300) < rate))
        flagged += judge(c, p, cfg) is not None
    assert flagged / runs <= cfg.alpha, flagged
    strict = cfg.model_copy(update={"alpha": 0.001})  # the default: rarer still
    assert sum(judge(_side("c", [True] * 3 + [False] * 37), _side("p", [False] * 300), s)
               is not None for s in (cfg, strict)) == 1  # fmt: skip


def test_roles_pick_the_smallest_live_weight_as_canary() -> None:
    def spec(*weights: float) -> D.DeploymentSpec:
        routes = [{"model": f"{FAKE}r{i}", "weight": w} for i, w in enumerate(weights)]
        return D.DeploymentSpec.model_validate({"name": "bot", "routes": routes})

    assert roles(spec(90, 10)) == (FAKE + "r1", FAKE + "r0")
    assert roles(spec(10, 90)) == (FAKE + "r0", FAKE + "r1")
    assert roles(spec(50, 50)) == (FAKE + "r1", FAKE + "r0")  # tie: the later one is canary
    assert roles(spec(80, 0, 20)) == (FAKE + "r2", FAKE + "r0")  # a drained route is no canary
    assert roles(spec(100)) is None and roles(spec(100, 0)) is None


def test_settings_reject_unknown_signals_and_keys() -> None:
    with pytest.raises(ValidationError, match="unknown signals"):
        CanaryGuardSettings(signals=["errors", "vibes"])
    with pytest.raises(ValidationError):
        D.DeploymentSpec.model_validate(
            {"name": "bot", "routes": [fake_route("a")], "canary_guard": {"windw": 10}}
        )


# -- the watch on simulated traffic -------------------------------------------------------------
def _info(canary_guard: dict[str, Any] | None = None, ref: str = "bot:v1") -> D.DeploymentInfo:
    spec = D.DeploymentSpec.model_validate(
        {
            "name": "bot",
            "routes": [fake_route("prod", 90), fake_route("cand", 10)],
            "canary_guard": canary_guard or {},
        }
    )
    return D.DeploymentInfo(
        ref=ref, spec=spec, action="apply", created_at="2026-11-01T00:00:00+00:00", created_by="t"
    )


def _simulate(
    watch: CanaryWatch, info: D.DeploymentInfo, rng: np.random.Generator, n: int, bad: float
) -> int | None:
    """Send n requests 90/10 (canary error rate `bad`, production 5%); the request number of
    the first decision, or None."""
    for i in range(n):
        canary = rng.random() < 0.1
        served = FAKE + ("cand" if canary else "prod")
        error = rng.random() < (bad if canary else 0.05)
        lat = float(rng.lognormal(3, 0.4))
        rid = f"r{i}"
        if watch.observe(info, served, rid, 500 if error else 200, lat) is not None:
            return i
        if rng.random() < 0.3 and watch.rate(rid, float(rng.random() < 0.8)) is not None:
            return i
    return None


def test_watch_on_healthy_traffic_rarely_rolls_back_and_catches_a_bad_canary() -> None:
    info = _info()
    healthy = [
        _simulate(CanaryWatch(), info, np.random.default_rng(s), 2000, 0.05) for s in range(40)
    ]
    # judged every 5 outcomes over a sliding window: far more looks than one test, still rare
    assert sum(d is not None for d in healthy) <= 1, healthy
    caught = [
        _simulate(CanaryWatch(), info, np.random.default_rng(s), 2000, 0.4) for s in range(20)
    ]
    assert all(d is not None and d < 800 for d in caught), caught


def test_watch_decides_once_ignores_client_errors_and_old_versions() -> None:
    watch = CanaryWatch()
    info = _info({"min_requests": 10, "check_every": 1})
    prod, cand = FAKE + "prod", FAKE + "cand"
    for i in range(10):
        assert watch.observe(info, prod, f"p{i}", 200, 5.0) is None
        assert watch.observe(info, cand, f"c{i}", 429, 5.0) is None  # the caller's fault
    assert watch.snapshot()["bot"]["requests"] == {cand: 0, prod: 10}
    decisions = [watch.observe(info, cand, f"e{i}", 500, 5.0) for i in range(20)]
    hits = [d for d in decisions if d is not None]
    assert len(hits) == 1 and hits[0].canary == cand and hits[0].production == prod
    assert "error rate 1.00 vs 0.00" in hits[0].reason
    # a newer deployment version starts fresh windows; requests of the old one are ignored
    newer = _info({"min_requests": 10, "check_every": 1}, ref="bot:v2")
    assert watch.observe(newer, prod, "n1", 200, 5.0) is None
    assert watch.observe(info, cand, "old", 500, 5.0) is None
    assert watch.snapshot()["bot"] | {"requests": None} == {
        "ref": "bot:v2",
        "canary": cand,
        "production": prod,
        "decided": False,
        "requests": None,
        "ratings": {cand: 0, prod: 0},
    }
    # ratings of unknown requests, or without a value, count for nothing
    assert watch.rate("nope", 0.0) is None and watch.rate("n1", None) is None


def test_watch_forgets_outcomes_older_than_window_s() -> None:
    now = [0.0]
    watch = CanaryWatch(clock=lambda: now[0])
    info = _info({"min_requests": 10, "check_every": 1, "window_s": 60})
    prod, cand = FAKE + "prod", FAKE + "cand"
    for i in range(10):
        watch.observe(info, cand, f"c{i}", 500, 5.0)  # a bad minute long ago
    now[0] = 120.0
    for i in range(30):
        assert watch.observe(info, prod, f"p{i}", 200, 5.0) is None
    for i in range(9):
        assert watch.observe(info, cand, f"d{i}", 200, 5.0) is None
    assert watch.snapshot()["bot"]["requests"][cand] == 9


# -- a real gateway -----------------------------------------------------------------------------
def _drive(g: Gw, n: int, rate: Any = None) -> Counter[str]:
    """n chat requests, 8 at a time, through the real openai client; returns how many each
    version answered ('error' for failures). `rate(version)` gives feedback to send, if any."""
    served: Counter[str] = Counter()

    async def run() -> None:
        async with openai.AsyncOpenAI(
            base_url=g.url + "/v1", api_key=g.admin_key, max_retries=0
        ) as ac:
            sem = asyncio.Semaphore(8)

            async def one() -> None:
                async with sem:
                    try:
                        r = await ac.chat.completions.create(model="bot", messages=MSG)
                    except openai.InternalServerError:
                        served["error"] += 1
                        return
                    version = r.model_extra["luodi"]["model_version"].rsplit("#", 1)[1]
                    served[version] += 1
                    rating = rate(version) if rate else None
                    if rating is not None:
                        await ac.post(
                            "/feedback",
                            body={"request_id": r.id, "rating": rating},
                            cast_to=object,
                        )

            await asyncio.gather(*(one() for _ in range(n)))

    asyncio.run(run())
    return served


def _until_rolled_back(g: Gw, batches: int, rate: Any = None) -> D.DeploymentInfo:
    for _ in range(batches):
        _drive(g, 100, rate)
        info = D.current(g.store, "bot")
        if info.action == "auto-rollback":
            return info
    return D.current(g.store, "bot")


@pytest.mark.parametrize(
    ("canary", "extra", "label"),
    [
        ("flaky50-cand", {}, "error rate"),
        ("toxic100-cand", {"guard": "default"}, "guard-block rate"),
        ("sluggish150-cand", {}, "latency p95"),
    ],
)
def test_a_bad_canary_is_rolled_back_by_the_gateway(
    tmp_path: Path, canary: str, extra: dict[str, Any], label: str
) -> None:
    dep = {
        "name": "bot",
        "sticky": "none",
        "routes": [fake_route("prod", 90), fake_route(canary, 10)],
        "canary_guard": {"min_requests": 20},
        **extra,
    }
    with gateway(tmp_path, [dep]) as g:
        info = _until_rolled_back(g, batches=12)
        assert info.action == "auto-rollback", D.current(g.store, "bot")
        assert info.ref == "bot:v2" and label in (info.reason or "")
        assert f"canary {FAKE}{canary} {label}" in info.reason and "(p=" in info.reason
        assert [(r.served, r.weight) for r in info.spec.routes] == [(FAKE + "prod", 100.0)]
        # traffic moved at once (the gateway refreshed), all of it to production
        assert _drive(g, 60) == Counter({"prod": 60})
        assert [h.action for h in D.history(g.store, "bot")] == ["apply", "auto-rollback"]
        with g.http() as h:
            metrics = h.get("/metrics").text
            shown = h.get("/admin/deployments/bot").json()
        assert 'luodi_canary_rollbacks_total{deployment="bot"} 1.0' in metrics
        assert shown["current"]["action"] == "auto-rollback"
        assert shown["current"]["reason"] == info.reason
        out = run_cli("deploy", "show", "bot", home=tmp_path).stdout
        assert (
            "auto-rollback at" in out
            and "by the canary guard" in out
            and label in out
            and "prod" in out
            and "100.0%" in out
        )
        if label == "error rate":  # the list of deployments says it too
            assert "auto-rollback:" in run_cli("deploy", "show", home=tmp_path).stdout


def test_negative_feedback_rolls_the_canary_back(tmp_path: Path) -> None:
    dep = {
        "name": "bot",
        "sticky": "none",
        "routes": [fake_route("prod", 90), fake_route("cand", 10)],
        "canary_guard": {"min_feedback": 15, "min_requests": 20},
    }
    seen = Counter()

    def rate(version: str) -> str | None:  # users dislike the canary; rate some of production
        seen[version] += 1
        if version == "cand":
            return "👎" if seen[version] % 4 else "👍"
        return ("👍" if seen[version] % 10 else "👎") if seen[version] % 3 == 0 else None

    with gateway(tmp_path, [dep]) as g:
        info = _until_rolled_back(g, batches=8, rate=rate)
        assert info.action == "auto-rollback" and "negative-feedback rate" in info.reason
        assert _drive(g, 30) == Counter({"prod": 30})


def test_a_healthy_canary_is_left_alone(tmp_path: Path) -> None:
    # both sides fail 10% of the time, and are guarded: the same quality, no rollback
    dep = {
        "name": "bot",
        "sticky": "none",
        "guard": "default",
        "routes": [fake_route("flaky10-prod", 90), fake_route("flaky10-cand", 10)],
    }
    with gateway(tmp_path, [dep]) as g:
        served = _drive(g, 800)
        assert served["flaky10-cand"] >= 40 and served["error"] > 0
        time.sleep(0.2)
        assert [h.action for h in D.history(g.store, "bot")] == ["apply"]
        state = g.app.state.gateway.canary.snapshot()["bot"]
        assert state["decided"] is False and min(state["requests"].values()) >= 40
        out = run_cli("deploy", "show", "bot", home=tmp_path).stdout
        assert "auto-rollback" not in out and "canary guard: on (errors" in out


def test_a_disabled_guard_never_rolls_back(tmp_path: Path) -> None:
    dep = {
        "name": "bot",
        "sticky": "none",
        "routes": [fake_route("prod", 90), fake_route("flaky50-cand", 10)],
        "canary_guard": {"enabled": False},
    }
    with gateway(tmp_path, [dep]) as g:
        served = _drive(g, 500)
        assert served["error"] >= 10
        assert [h.action for h in D.history(g.store, "bot")] == ["apply"]


def test_auto_rollback_refuses_a_deployment_changed_meanwhile(tmp_path: Path) -> None:
    from luodi.config import Settings
    from luodi.errors import ConflictError, NotFoundError
    from luodi.store import Store

    store = Store(Settings(home=tmp_path))
    spec = {
        "name": "bot",
        "routes": [fake_route("prod", 80), fake_route("a", 10), fake_route("b", 10)],
    }
    D.apply(store, D.DeploymentSpec.model_validate(spec))
    with pytest.raises(ConflictError, match="bot:v1"):
        D.auto_rollback(store, "bot", FAKE + "b", "bot:v0", "why")
    with pytest.raises(NotFoundError, match="no canary route"):
        D.auto_rollback(store, "bot", FAKE + "zzz", "bot:v1", "why")
    info = D.auto_rollback(store, "bot", FAKE + "b", "bot:v1", "b is worse")
    assert [(r.served, r.weight) for r in info.spec.routes] == [
        (FAKE + "prod", 90.0),
        (FAKE + "a", 10.0),
    ]
    assert (info.action, info.reason) == ("auto-rollback", "b is worse")
    # the manual rollback undoes it: the previous spec with the canary back
    back = D.rollback(store, "bot")
    assert [r.weight for r in back.spec.routes] == [80.0, 10.0, 10.0]
    store.close()
