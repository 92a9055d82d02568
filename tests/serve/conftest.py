"""Gateway fixtures: a real app under uvicorn on 127.0.0.1 over a fresh store, with an admin
key, scripted backends for the routes named `openai:http://fake.invalid/v1#NAME`, and the real
engines for everything else."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai

from luodi.config import Settings
from luodi.guard import load_policy
from luodi.serve import deployments as D
from luodi.serve.app import create_app
from luodi.serve.auth import KeyStore
from luodi.serve.config import ServeConfig
from luodi.serve.gateway import ServeDeps
from luodi.serve.limits import Quotas, make_limiter
from luodi.serve.usage import UsageRecorder
from luodi.store import Store
from tests.helpers import running_server
from tests.serve.fakes import FAKE, fake_opener


@dataclass
class Gw:
    """A running gateway for a test."""

    url: str
    store: Store
    admin_key: str
    keys: KeyStore
    recorder: UsageRecorder
    opened: dict[str, Any]
    app: Any

    def client(self, key: str | None = None, **kw: Any) -> openai.OpenAI:
        """The real openai client against the gateway (no retries: tests see each status)."""
        return openai.OpenAI(
            base_url=self.url + "/v1", api_key=key or self.admin_key, max_retries=0, **kw
        )

    def http(self, key: str | None = None) -> httpx.Client:
        """A plain HTTP client with the key set."""
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key or self.admin_key}"},
            timeout=60,
        )

    def key(self, role: str = "user", team: str = "default", **limits: Any) -> str:
        """A new key (its team is created when missing)."""
        if team not in {t.name for t in self.keys.list_teams()}:
            self.keys.create_team(team)
        return self.keys.create_key(team, role, f"{role}-test", **limits)[1]


def fake_route(name: str, weight: float = 100) -> dict[str, Any]:
    """A deployment route served by ScriptedBackend(name)."""
    return {"model": FAKE + name, "weight": weight}


@contextmanager
def gateway(
    home: Path,
    deployments: list[dict[str, Any]] = (),  # type: ignore[assignment]
    store: Store | None = None,
    **config: Any,
) -> Iterator[Gw]:
    """Apply `deployments` (dicts of DeploymentSpec) and serve them; ServeConfig `config`."""
    store = store or Store(Settings(home=home))
    for d in deployments:
        D.apply(store, D.DeploymentSpec.model_validate(d))
    cfg = ServeConfig(reload_interval_s=0.1, **config)
    keys = KeyStore(store)
    if "default" not in {t.name for t in keys.list_teams()}:
        keys.create_team("default")
    _, admin = keys.create_key("default", "admin", "test-admin")
    recorder = UsageRecorder(store, interval_s=0.05)
    opened: dict[str, Any] = {}
    deps = ServeDeps(
        store=store,
        config=cfg,
        keys=keys,
        limiter=make_limiter(cfg.redis_url),
        quotas=Quotas(store, recorder),
        recorder=recorder,
        opener=fake_opener(opened),
        policy_loader=load_policy,
    )
    app = create_app(deps)
    with running_server(app) as url:
        yield Gw(url, store, admin, keys, recorder, opened, app)
    store.close()
