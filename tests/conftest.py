"""Shared fixtures: stores on SQLite and (when LUODI_TEST_POSTGRES_URL is set) PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from luodi.config import Settings
from luodi.store import Store

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PG_ENV = "LUODI_TEST_POSTGRES_URL"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A store on a fresh SQLite file and artifact root."""
    s = Store(Settings(home=tmp_path / "home"))
    yield s
    s.close()


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database (dropped afterwards); skipped only when no URL is set.

    CI always sets LUODI_TEST_POSTGRES_URL (.ci/run), so these tests always run there.
    """
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} not set")
    name = f"luodi_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, _ = url.rpartition("/")
    yield f"{base}/{name}"
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The same store contract on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        s = Store(Settings(home=tmp_path / "home"))
    else:
        url = request.getfixturevalue("pg_database")
        s = Store(Settings(home=tmp_path / "home", database_url=url))
    yield s
    s.close()
