"""Canary traffic split, stickiness, hot swap under streaming load, promote and rollback."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import openai

from luodi.serve import deployments as D
from tests.serve.conftest import FAKE, fake_route, gateway

MSG = [{"role": "user", "content": "hi"}]


def test_canary_split_within_5_percent_and_sticky(tmp_path: Path) -> None:
    dep = {
        "name": "bot",
        "sticky": "user",
        "routes": [fake_route("prod", 90), fake_route("cand", 10)],
    }
    with gateway(tmp_path, [dep]) as g:
        client = g.client()
        served: dict[str, str] = {}

        async def route_all() -> None:
            async with openai.AsyncOpenAI(
                base_url=g.url + "/v1", api_key=g.admin_key, max_retries=0
            ) as ac:
                sem = asyncio.Semaphore(16)

                async def one(i: int) -> None:
                    async with sem:
                        r = await ac.chat.completions.create(
                            model="bot", messages=MSG, user=f"user-{i}", max_tokens=1
                        )
                        served[f"user-{i}"] = r.model_extra["luodi"]["model_version"]

                await asyncio.gather(*(one(i) for i in range(1000)))

        asyncio.run(route_all())
        share = Counter(served.values())[FAKE + "cand"] / 1000
        assert abs(share - 0.10) <= 0.05, share
        for user in ("user-1", "user-7", "user-500"):  # sticky: the same user, the same version
            for _ in range(3):
                r = client.chat.completions.create(model="bot", messages=MSG, user=user)
                assert r.model_extra["luodi"]["model_version"] == served[user]


def test_sticky_per_key_by_default(tmp_path: Path) -> None:
    dep = {"name": "bot", "routes": [fake_route("a", 50), fake_route("b", 50)]}
    with gateway(tmp_path, [dep]) as g:
        for _ in range(4):
            key = g.key("user")
            seen = {
                g.client(key)
                .chat.completions.create(model="bot", messages=MSG)
                .model_extra["luodi"]["model_version"]
                for _ in range(4)
            }
            assert len(seen) == 1


def test_hot_swap_under_streaming_load_drops_nothing(tmp_path: Path) -> None:
    with gateway(tmp_path, [{"name": "bot", "routes": [fake_route("old")]}]) as g:
        results: list[tuple[str, str]] = []
        errors: list[BaseException] = []

        async def stream_one(ac: openai.AsyncOpenAI) -> None:
            try:
                stream = await ac.chat.completions.create(
                    model="bot", messages=[{"role": "user", "content": "slow:10"}], stream=True
                )
                text, finish = "", None
                async for c in stream:
                    if c.choices:
                        text += c.choices[0].delta.content or ""
                        finish = c.choices[0].finish_reason or finish
                results.append((text, finish))
            except BaseException as exc:
                errors.append(exc)

        async def load() -> None:
            async with openai.AsyncOpenAI(
                base_url=g.url + "/v1", api_key=g.admin_key, max_retries=0
            ) as ac:
                tasks = []
                for i in range(30):
                    tasks.append(asyncio.create_task(stream_one(ac)))
                    if i == 10:  # mid-load: apply a new version through the admin API
                        async with httpx.AsyncClient(base_url=g.url) as h:
                            r = await h.post(
                                "/admin/deployments",
                                json={"name": "bot", "routes": [fake_route("new")]},
                                headers={"Authorization": f"Bearer {g.admin_key}"},
                            )
                            assert r.status_code == 200, r.text
                    await asyncio.sleep(0.02)
                await asyncio.gather(*tasks)

        asyncio.run(load())
        assert not errors
        assert len(results) == 30
        assert all(f == "stop" for _, f in results)
        versions = Counter(t.split("-")[0] for t, _ in results)
        assert versions["old"] > 0 and versions["new"] > 0
        assert all(t == f"{t.split('-')[0]}-0 " + "".join(
            f"{t.split('-')[0]}-{i} " for i in range(1, 10)) for t, _ in results)  # fmt: skip
        # the old backend is closed once its last stream ended
        deadline = time.monotonic() + 5
        while not g.opened["old"].closed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert g.opened["old"].closed


def test_promote_and_rollback_take_effect_without_restart(tmp_path: Path) -> None:
    dep = {"name": "bot", "routes": [fake_route("prod", 80), fake_route("cand", 20)]}
    with gateway(tmp_path, [dep]) as g:
        client = g.client()

        def version() -> str:
            r = client.chat.completions.create(model="bot", messages=MSG)
            return r.model_extra["luodi"]["model_version"].rsplit("#", 1)[1]

        D.promote(g.store, "bot")  # the CLI's path: the store; the server notices by itself
        deadline = time.monotonic() + 5
        while version() != "cand" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {version() for _ in range(5)} == {"cand"}
        with g.http() as h:
            back = h.post("/admin/deployments/bot/rollback", json={"reason": "bad answers"})
        assert back.status_code == 200 and back.json()["action"] == "rollback"
        routes = back.json()["spec"]["routes"]
        assert [r["weight"] for r in routes] == [80, 20]
        history = [i.action for i in D.history(g.store, "bot")]
        assert history == ["apply", "promote", "rollback"]


def test_a_version_that_cannot_load_keeps_the_old_one_serving(tmp_path: Path) -> None:
    with gateway(tmp_path, [{"name": "bot", "routes": [fake_route("good")]}]) as g:
        spec = D.DeploymentSpec.model_validate({"name": "bot", "routes": [fake_route("broken")]})
        D.apply(g.store, spec)
        deadline = time.monotonic() + 5
        while "bot" not in g.app.state.gateway.router.errors and time.monotonic() < deadline:
            time.sleep(0.05)
        with g.http() as h:
            ready = h.get("/readyz").json()
        assert "weights are corrupt" in ready["errors"]["bot"]
        r = g.client().chat.completions.create(model="bot", messages=MSG)
        assert r.choices[0].message.content == "good: hi"
