"""A composite endpoint through a real gateway: the members are deployments of a second real
gateway (scripted backends reached through the openai upstream engine), so each reply shows
which member answered, and `luodi.served_by` must agree."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from luodi.collab.composite import CompositeConfig, create_composite
from luodi.config import Settings
from luodi.store import Store
from tests.collab.data import DOMAIN_PROBES, DOMAIN_QUESTIONS, GENERAL_PROBES
from tests.helpers import save_qa
from tests.serve.conftest import Gw, fake_route, gateway

KEY_ENV = "H8_MEMBERS_KEY"


@contextmanager
def members(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gw]:
    """A gateway serving `domain-llm` (ScriptedBackend "domainbot") and `general-llm`
    ("generalbot"); its admin key is in $H8_MEMBERS_KEY for the composite's upstreams."""
    deps = [
        {"name": "domain-llm", "routes": [fake_route("domainbot")]},
        {"name": "general-llm", "routes": [fake_route("generalbot")]},
    ]
    with gateway(tmp_path / "members", deps) as gw:
        monkeypatch.setenv(KEY_ENV, gw.admin_key)
        yield gw


def _composite(tmp_path: Path, up: Gw, **cfg: object) -> Store:
    store = Store(Settings(home=tmp_path / "front"))
    save_qa(store, [(q, "见设备手册") for q in DOMAIN_QUESTIONS], name="mfg")
    fields = {
        "name": "xinghe-collab",
        "domain": f"openai:{up.url}/v1#domain-llm",
        "general": f"openai:{up.url}/v1#general-llm",
    }
    create_composite(store, CompositeConfig.model_validate(fields | cfg))
    return store


def _front(tmp_path: Path, store: Store):  # noqa: ANN202
    route = {"model": "xinghe-collab", "api_key_env": KEY_ENV}
    return gateway(tmp_path / "front", [{"name": "assistant", "routes": [route]}], store=store)


def test_route_composite_answers_with_the_member_the_router_picks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with members(tmp_path, monkeypatch) as up:
        store = _composite(tmp_path, up, mode="route", data="mfg", classifier="keyword")
        with _front(tmp_path, store) as gw:
            dep = store.resolve("assistant", "deployment")
            assert [(p.kind, p.ref, p.role) for p in dep.parents] == [
                ("composite", "xinghe-collab:v1", "serves")
            ]
            client = gw.client()
            for question, member in [(q, "domain") for q in DOMAIN_PROBES[:3]] + [
                (q, "general") for q in GENERAL_PROBES[:3]
            ]:
                r = client.chat.completions.create(
                    model="assistant", messages=[{"role": "user", "content": question}]
                )
                bot = "domainbot" if member == "domain" else "generalbot"
                assert r.choices[0].message.content == f"{bot}: {question}"
                extra = r.model_extra["luodi"]
                assert extra["model_version"] == "xinghe-collab:v1"
                assert extra["served_by"] == f"xinghe-collab:v1>openai:{up.url}/v1#{member}-llm"
            assert (up.opened["domainbot"].calls, up.opened["generalbot"].calls) == (3, 3)

            # Streaming goes through the picked member too.
            pieces = client.chat.completions.create(
                model="assistant",
                messages=[{"role": "user", "content": GENERAL_PROBES[0]}],
                stream=True,
            )
            text = "".join(c.choices[0].delta.content or "" for c in pieces if c.choices)
            assert text == f"generalbot: {GENERAL_PROBES[0]}"
            assert up.opened["generalbot"].calls == 4
            # Embeddings are not routed: a clear 400 naming the composite.
            http = gw.http()
            bad = http.post("/v1/embeddings", json={"model": "assistant", "input": "x"})
            assert bad.status_code == 400
            # The gateway's metrics stay per composite version (served_by is per reply).
            metrics = http.get("/metrics").text
            assert 'model_version="xinghe-collab:v1"' in metrics
            assert "domain-llm" not in metrics
        store.close()


def test_cascade_falls_back_when_the_domain_answer_fails_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with members(tmp_path, monkeypatch) as up:
        store = _composite(tmp_path, up, mode="cascade")
        with _front(tmp_path, store) as gw:
            client = gw.client()
            kept = client.chat.completions.create(
                model="assistant", messages=[{"role": "user", "content": "冲压件毛刺怎么处理？"}]
            )
            assert kept.choices[0].message.content == "domainbot: 冲压件毛刺怎么处理？"
            assert kept.model_extra["luodi"]["served_by"].endswith("#domain-llm")
            assert (up.opened["domainbot"].calls, up.opened["generalbot"].calls) == (1, 0)

            # The scripted domain model says it does not know: the general model answers and
            # the usage counts both replies (the domain model's tokens were spent too).
            unsure = "say:抱歉，我不确定这个问题的答案"
            r = client.chat.completions.create(
                model="assistant", messages=[{"role": "user", "content": unsure}]
            )
            assert r.model_extra["luodi"]["served_by"].endswith("#general-llm")
            assert (up.opened["domainbot"].calls, up.opened["generalbot"].calls) == (2, 1)
            # ScriptedBackend counts one completion token per 3-character piece of the reply.
            pieces = -(-len(unsure[4:]) // 3)
            assert r.usage.completion_tokens == 2 * pieces

            stream = client.chat.completions.create(
                model="assistant",
                messages=[{"role": "user", "content": "say:I don't know."}],
                stream=True,
            )
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            assert text == "I don't know."  # what the general model said, streamed
            assert (up.opened["domainbot"].calls, up.opened["generalbot"].calls) == (3, 2)
        store.close()
