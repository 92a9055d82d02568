"""Keys, roles, teams, rate limits and token quotas at the gateway, through the real client."""

from __future__ import annotations

import os
import time
from pathlib import Path

import openai
import pytest

from tests.serve.conftest import fake_route, gateway

DEPS = [
    {"name": "shared", "routes": [fake_route("s")]},
    {"name": "finance-bot", "team": "finance", "routes": [fake_route("f")]},
]
MSG = [{"role": "user", "content": "hello"}]


def test_missing_bad_and_revoked_keys_are_401(tmp_path: Path) -> None:
    with gateway(tmp_path, DEPS) as g:
        with g.http() as h:
            h.headers.pop("Authorization")
            r = h.post("/v1/chat/completions", json={"model": "shared", "messages": MSG})
            assert r.status_code == 401
            assert r.json()["error"]["type"] == "authentication_error"
        with pytest.raises(openai.AuthenticationError):
            g.client("ld-nothere-xxxxxxxx").chat.completions.create(model="shared", messages=MSG)
        key = g.key("user")
        assert g.client(key).chat.completions.create(model="shared", messages=MSG).choices
        key_id = key.split("-")[1]
        with g.http() as h:
            assert h.delete(f"/admin/keys/{key_id}").status_code == 200
        with pytest.raises(openai.AuthenticationError):
            g.client(key).chat.completions.create(model="shared", messages=MSG)


def test_roles_endpoints_and_teams(tmp_path: Path) -> None:
    with gateway(tmp_path, DEPS) as g:
        user = g.key("user")
        dev_fin = g.key("developer", team="finance")
        with g.http(user) as h:
            assert h.get("/admin/keys").status_code == 403
            assert h.get("/admin/usage").status_code == 403
        with g.http(dev_fin) as h:
            assert h.get("/admin/usage").status_code == 200
            assert h.post("/admin/keys", json={"team": "finance", "name": "x"}).status_code == 403
            names = [d["spec"]["name"] for d in h.get("/admin/deployments").json()["data"]]
            assert names == ["finance-bot"]
        # a team sees only its own models; another team's model is "not found", not revealed
        assert [m.id for m in g.client(dev_fin).models.list()] == ["finance-bot"]
        with pytest.raises(openai.NotFoundError):
            g.client(user).chat.completions.create(model="finance-bot", messages=MSG)
        # a key limited to embeddings may not chat
        emb_only = g.key("user", endpoints=["embeddings"])
        with pytest.raises(openai.PermissionDeniedError):
            g.client(emb_only).chat.completions.create(model="shared", messages=MSG)
        # admins create keys over the API; the secret is shown once and works
        with g.http() as h:
            made = h.post("/admin/keys", json={"team": "finance", "role": "user", "name": "app"})
            assert made.status_code == 201
            secret = made.json()["key"]
            listed = h.get("/admin/keys", params={"team": "finance"}).text
        assert secret not in listed
        assert g.client(secret).chat.completions.create(model="finance-bot", messages=MSG)


def _limited(g, **limits) -> openai.OpenAI:  # noqa: ANN001
    return g.client(g.key("user", **limits))


def test_rate_limit_then_recovery_in_process(tmp_path: Path) -> None:
    with gateway(tmp_path, DEPS) as g:
        g.app.state.gateway.deps.limiter.window_s = 1.0  # a one-second window for the test
        client = _limited(g, rpm=3)
        for _ in range(3):
            client.chat.completions.create(model="shared", messages=MSG)
        with pytest.raises(openai.RateLimitError) as err:
            client.chat.completions.create(model="shared", messages=MSG)
        retry = float(err.value.response.headers["retry-after"])
        assert 1 <= retry <= 2
        assert err.value.body["type"] == "rate_limit_error"
        time.sleep(1.1)
        assert client.chat.completions.create(model="shared", messages=MSG).choices


@pytest.mark.skipif(not os.environ.get("LUODI_TEST_REDIS_URL"), reason="needs Redis")
def test_rate_limit_shared_by_two_gateways_through_redis(tmp_path: Path) -> None:
    url = os.environ["LUODI_TEST_REDIS_URL"]
    with gateway(tmp_path / "a", DEPS, redis_url=url) as a:
        with gateway(tmp_path / "b", DEPS, redis_url=url, store=a.store) as b:
            key = a.key("user", rpm=4)
            for i in range(4):
                (a if i % 2 else b).client(key).chat.completions.create(
                    model="shared", messages=MSG
                )
            for g in (a, b):
                with pytest.raises(openai.RateLimitError):
                    g.client(key).chat.completions.create(model="shared", messages=MSG)


def test_token_quota_exhausts(tmp_path: Path) -> None:
    with gateway(tmp_path, DEPS) as g:
        client = _limited(g, tokens_per_day=12)
        used = 0
        while used < 12:
            resp = client.chat.completions.create(model="shared", messages=MSG)
            used += resp.usage.total_tokens
            g.recorder.flush()
        with pytest.raises(openai.RateLimitError) as err:
            client.chat.completions.create(model="shared", messages=MSG)
        assert "quota" in err.value.message.lower()
        assert float(err.value.response.headers["retry-after"]) > 0


def test_usage_report_sums_what_was_served(tmp_path: Path) -> None:
    with gateway(tmp_path, DEPS) as g:
        key = g.key("user")
        total = 0
        for q in ("a", "bb", "ccc"):
            total += (
                g.client(key)
                .chat.completions.create(model="shared", messages=[{"role": "user", "content": q}])
                .usage.total_tokens
            )
        with g.http() as h:
            rows = h.get("/admin/usage", params={"by": "key", "period": "1d"}).json()["rows"]
        row = next(r for r in rows if r["group"] == key.split("-")[1])
        assert row["requests"] == 3
        assert row["prompt_tokens"] + row["completion_tokens"] == total
