"""Teams and API keys on SQLite and PostgreSQL: create, authenticate (cached, constant-time),
revoke, roles; the database never holds a secret; migration 0003 upgrades 0002 in place."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, select, text

from luodi.config import Settings
from luodi.errors import AuthError, BadInputError, ConflictError, NotFoundError
from luodi.errors import PermissionDeniedError as Denied
from luodi.serve.auth import ENDPOINTS, KeyStore, Principal, authorize, parse_key
from luodi.serve.auth import keys as keys_mod
from luodi.store import Store
from luodi.store.db import MIGRATIONS, make_engine
from luodi.store.models import ApiKeyRow

SERVING_TABLES = {"teams", "api_keys", "usage_records", "request_logs", "feedback"}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def keys(any_store: Store) -> KeyStore:
    ks = KeyStore(any_store)
    ks.create_team("support")
    ks.create_team("sales")
    return ks


def test_create_authenticate_and_list(keys: KeyStore) -> None:
    p, secret = keys.create_key(
        "support", "developer", "faq bot", rpm=60, tokens_per_day=1000, endpoints=["completions"]
    )
    assert secret.startswith(f"ld-{p.key_id}-") and len(p.key_id) == 8
    assert parse_key(secret) == (p.key_id, secret[12:])
    assert len(secret[12:]) == 43  # 32 random bytes, URL-safe base64
    got = keys.authenticate(secret)
    assert got == p
    assert (got.team, got.role, got.rpm, got.tokens_per_day, got.tokens_per_month) == (
        "support",
        "developer",
        60,
        1000,
        None,
    )
    assert got.endpoints == ["completions"]
    [info] = keys.list_keys("support")
    assert info.key_id == p.key_id and info.active and info.revoked_at is None
    assert keys.list_keys("sales") == []
    teams = {t.name: t.active_keys for t in keys.list_teams()}
    assert teams == {"sales": 0, "support": 1}


def test_the_database_holds_no_secret(keys: KeyStore, any_store: Store) -> None:
    _, full = keys.create_key("support", "user", "web")
    secret = parse_key(full)[1]
    with any_store.engine.connect() as conn:
        for table in ("api_keys", "teams"):
            for row in conn.execute(text(f"SELECT * FROM {table}")).all():
                for value in row:
                    assert secret not in str(value) and full not in str(value)
        row = conn.execute(select(ApiKeyRow)).one()
    # what is stored is sha256(salt + secret) with a per-key random salt
    assert row.hash == hashlib.sha256((row.salt + secret).encode()).hexdigest()
    assert len(row.salt) == 32


def test_wrong_secret_with_a_right_key_id_fails(keys: KeyStore) -> None:
    p, full = keys.create_key("support", "user", "web")
    last = full[-1]
    wrong = full[:-1] + ("A" if last != "A" else "B")
    with pytest.raises(AuthError, match="invalid API key"):
        keys.authenticate(wrong)
    with pytest.raises(AuthError):
        keys.authenticate(f"ld-zzzzzzzz-{parse_key(full)[1]}")  # right secret, unknown id
    for bad in ("", "sk-123", "ld-", "ld-short", "ld-abcdefgh", "ld-abcdefghXsecret"):
        with pytest.raises(AuthError):
            keys.authenticate(bad)
    assert keys.authenticate(full).key_id == p.key_id


def test_hashes_are_compared_in_constant_time(
    keys: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(keys_mod.hmac, "compare_digest", spy)
    _, full = keys.create_key("support", "user", "web")
    keys.authenticate(full)
    with pytest.raises(AuthError):
        keys.authenticate(full + "x")
    with pytest.raises(AuthError):  # an unknown id still costs a hash and a compare
        keys.authenticate("ld-00000000-" + parse_key(full)[1])
    assert len(calls) == 3


def test_revoke_is_immediate_here_and_after_the_ttl_elsewhere(any_store: Store) -> None:
    clock = Clock()
    here = KeyStore(any_store, cache_ttl_s=5, clock=clock)
    other = KeyStore(any_store, cache_ttl_s=5, clock=clock)  # another gateway replica
    here.create_team("support")
    p, full = here.create_key("support", "user", "web")
    assert here.authenticate(full) == other.authenticate(full) == p
    info = here.revoke(p.key_id)
    assert info.revoked_at is not None and not info.active
    with pytest.raises(AuthError, match="revoked"):
        here.authenticate(full)
    assert other.authenticate(full) == p  # still cached in the other replica ...
    clock.t += 5.01
    with pytest.raises(AuthError, match="revoked"):  # ... until its entry expires
        other.authenticate(full)
    assert here.revoke(p.key_id).revoked_at == info.revoked_at  # idempotent
    assert here.list_keys(include_revoked=False) == []
    with pytest.raises(NotFoundError):
        here.revoke("nokey123")


def test_cached_authentication_does_no_query(keys: KeyStore, any_store: Store) -> None:
    from sqlalchemy import event

    _, full = keys.create_key("support", "user", "web")
    keys.authenticate(full)
    queries: list[str] = []
    listener = lambda *a: queries.append(a[2])  # noqa: E731
    event.listen(any_store.engine, "before_cursor_execute", listener)
    try:
        for _ in range(50):
            keys.authenticate(full)
    finally:
        event.remove(any_store.engine, "before_cursor_execute", listener)
    assert queries == []


def test_bad_key_requests(keys: KeyStore) -> None:
    with pytest.raises(NotFoundError, match="luodi teams create ops"):
        keys.create_key("ops", "user", "x")
    with pytest.raises(BadInputError, match="unknown role"):
        keys.create_key("support", "root", "x")
    with pytest.raises(BadInputError, match="unknown endpoint"):
        keys.create_key("support", "user", "x", endpoints=["chat"])
    with pytest.raises(BadInputError, match="rpm"):
        keys.create_key("support", "user", "x", rpm=0)
    with pytest.raises(BadInputError, match="name"):
        keys.create_key("support", "user", "  ")
    with pytest.raises(ConflictError):
        keys.create_team("support")
    with pytest.raises(BadInputError):
        keys.create_team("bad/name")
    assert keys.list_keys() == []


def _p(role: str, team: str = "support", endpoints: list[str] | None = None) -> Principal:
    return Principal(key_id="k", team=team, role=role, name="n", endpoints=endpoints)


def test_roles() -> None:
    user, dev, admin = _p("user"), _p("developer"), _p("admin", team="ops")
    for ep in ("chat.completions", "completions", "embeddings", "models", "feedback"):
        for p in (user, dev, admin):
            authorize(p, ep)
    for ep in ("usage.read", "deployments.read"):
        with pytest.raises(Denied, match="role 'user'"):
            authorize(user, ep)
        authorize(dev, ep, team="support")
        with pytest.raises(Denied, match="only an admin"):
            authorize(dev, ep, team="sales")
        authorize(admin, ep, team="sales")
    authorize(user, "kb.search")
    with pytest.raises(Denied, match="role 'user'"):
        authorize(user, "kb.write")
    authorize(dev, "kb.write", team="support")
    with pytest.raises(Denied, match="only an admin"):
        authorize(dev, "kb.write", team="sales")
    admin_only = ENDPOINTS - {"chat.completions", "completions", "embeddings", "models"}
    admin_only -= {"feedback", "usage.read", "deployments.read", "kb.search", "kb.write"}
    assert "keys.write" in admin_only and "deployments.write" in admin_only
    for ep in admin_only:
        for p in (user, dev):
            with pytest.raises(Denied):
                authorize(p, ep)
        authorize(admin, ep, team="anyone")
    limited = _p("admin", endpoints=["embeddings"])  # the key's list narrows the role
    authorize(limited, "embeddings")
    with pytest.raises(Denied, match="limited to embeddings"):
        authorize(limited, "chat.completions")
    with pytest.raises(ValueError):
        authorize(admin, "chat")  # a typo in the server is a bug, not a 403


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return request.getfixturevalue("pg_database")


def test_0003_upgrades_a_0002_database_in_place(db_url: str, tmp_path: Path) -> None:
    url = db_url
    engine = make_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
    assert not SERVING_TABLES & set(inspect(engine).get_table_names())
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO runs (id, kind, name, status, config, started_at) "
                "VALUES ('r1', 'train', 'm', 'done', '{}', :at)"
            ),
            {"at": datetime(2026, 1, 2, tzinfo=UTC)},
        )
    engine.dispose()
    store = Store(Settings(home=tmp_path / "home", database_url=url))
    try:
        assert SERVING_TABLES <= set(inspect(store.engine).get_table_names())
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT name FROM runs")).scalar() == "m"
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert version == "0003"
        ks = KeyStore(store)
        ks.create_team("t")
        _, full = ks.create_key("t", "user", "n")
        assert ks.authenticate(full).team == "t"
    finally:
        store.close()
