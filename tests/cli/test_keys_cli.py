"""`luodi keys|teams|usage …`: through the Typer apps (CliRunner), and through the real
`luodi` command once the lead registers the sub-apps in luodi.cli."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from luodi.cli import app as luodi_app
from luodi.cli import keys as keys_cli
from luodi.cli import usage as usage_cli
from luodi.cli.state import STATE
from luodi.config import Settings
from luodi.errors import AuthError, NotFoundError
from luodi.serve.auth import KeyStore
from luodi.serve.usage import RequestLogEvent, UsageEvent, UsageRecorder
from luodi.store import Store
from tests.helpers import run_cli

root = typer.Typer()
root.add_typer(keys_cli.app, name="keys")
root.add_typer(keys_cli.teams_app, name="teams")
root.add_typer(usage_cli.app, name="usage")


@root.callback()
def _root() -> None:
    """The part of luodi's root command these tests need (the home comes from STATE)."""


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    STATE.home, STATE._store = home, None
    yield home
    if STATE._store is not None:
        STATE._store.close()
    STATE.home, STATE._store = None, None


def invoke(*args: str):  # noqa: ANN201 - click's Result
    return CliRunner().invoke(root, list(args))


def test_teams_and_keys(home: Path) -> None:
    assert invoke("teams", "create", "support").exit_code == 0
    res = invoke("teams", "list", "--json")
    assert [t["name"] for t in json.loads(res.stdout)] == ["support"]
    res = invoke(
        "keys", "create", "--team", "support", "--role", "developer", "--name", "faq bot",
        "--rpm", "30", "--tokens-per-day", "1000", "--endpoint", "chat.completions",
        "--endpoint", "embeddings",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    secret = res.stdout.strip()
    assert secret.startswith("ld-") and "shown only once" in res.stderr
    store = Store(Settings(home=home))
    try:
        p = KeyStore(store).authenticate(secret)
        assert (p.team, p.role, p.rpm, p.tokens_per_day) == ("support", "developer", 30, 1000)
        assert p.endpoints == ["chat.completions", "embeddings"]
        res = invoke("keys", "list", "--json")
        [listed] = json.loads(res.stdout)
        assert listed["key_id"] == p.key_id and secret.split("-", 2)[2] not in res.stdout
        assert invoke("keys", "list").exit_code == 0
        res = invoke("keys", "create", "--team", "support", "--name", "web", "--json")
        created = json.loads(res.stdout)
        assert created["role"] == "user" and created["key"].startswith("ld-")
        res = invoke("keys", "revoke", p.key_id)
        assert res.exit_code == 0 and f"revoked {p.key_id}" in res.stdout
        with pytest.raises(AuthError, match="revoked"):
            KeyStore(store).authenticate(secret)
        res = invoke("keys", "list", "--active", "--json")
        assert [k["key_id"] for k in json.loads(res.stdout)] == [created["key_id"]]
    finally:
        store.close()
    res = invoke("keys", "create", "--team", "nope", "--name", "x")
    assert isinstance(res.exception, NotFoundError)


def test_usage_report_export_and_purge(home: Path, tmp_path: Path) -> None:
    store = Store(Settings(home=home))
    now = datetime.now(UTC)
    try:
        with UsageRecorder(store) as rec:
            for i, (key, tokens, age) in enumerate([("k1", 10, 1), ("k1", 20, 2), ("k2", 5, 40)]):
                at = now - timedelta(days=age)
                common = dict(
                    request_id=f"r{i}", at=at, key_id=key, team="support", deployment="faq",
                    model_version="faq-bot:v1", endpoint="chat.completions",
                )  # fmt: skip
                rec.record_usage(
                    UsageEvent(**common, prompt_tokens=tokens, completion_tokens=1, latency_ms=9)
                )
                rec.record_request(RequestLogEvent(**common, prompt="q", response="a"))
    finally:
        store.close()
    res = invoke("usage", "report", "--by", "key", "--period", "7d", "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert [(r["group"], r["total_tokens"]) for r in rep["rows"]] == [("k1", 32)]
    res = invoke("usage", "report", "--by", "model", "--period", "60d", "--team", "support")
    assert res.exit_code == 0 and " 38 " in res.stdout  # 32 + 6 tokens, rows folded at 80 cols
    out = tmp_path / "usage.csv"
    res = invoke("usage", "export", "--period", "60d", "--out", str(out))
    assert res.exit_code == 0 and "wrote 3 rows" in res.stdout
    rows = list(csv.DictReader(open(out, encoding="utf-8", newline="")))
    assert sorted(r["request_id"] for r in rows) == ["r0", "r1", "r2"]
    res = invoke("usage", "purge-logs", "--older-than-days", "30")
    assert res.exit_code == 0 and "deleted 1 request logs" in res.stderr
    res = invoke("usage", "report", "--period", "last week")
    assert res.exit_code != 0 and "cannot read period" in str(res.exception)


REGISTERED = {g.name for g in luodi_app.registered_groups} >= {"keys", "teams", "usage"}


@pytest.mark.skipif(not REGISTERED, reason="the lead registers keys/teams/usage in luodi.cli")
def test_real_command(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run_cli("teams", "create", "support", home=home)
    secret = run_cli("keys", "create", "--team", "support", "--name", "bot", home=home).stdout
    key_id = secret.strip().split("-")[1]
    listed = json.loads(run_cli("keys", "list", "--json", home=home).stdout)
    assert [k["key_id"] for k in listed] == [key_id]
    run_cli("keys", "revoke", key_id, home=home)
    bad = run_cli("keys", "create", "--team", "nope", "--name", "x", home=home, check=False)
    assert bad.returncode == 2 and "luodi teams create nope" in bad.stderr
    rep = json.loads(run_cli("usage", "report", "--json", home=home).stdout)
    assert rep["total"]["requests"] == 0
