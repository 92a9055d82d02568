"""Runs (status, per-step metrics) and migration 0002, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import math
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import event, inspect, text

from luodi.config import Settings
from luodi.errors import BadInputError, NotFoundError
from luodi.store import Store
from luodi.store.db import MIGRATIONS, make_engine
from luodi.store.models import Base
from luodi.store.runs import Runs

NEW_TABLES = {"model_stages", "stage_events", "runs", "run_metrics"}


def _artifact(store: Store, kind: str, name: str):
    with store.create(kind, name) as d:
        (d.path / "w.txt").write_text(name, encoding="utf-8")
    return d.artifact


def test_run_lifecycle(any_store: Store, tmp_path: Path) -> None:
    runs = Runs(any_store)
    ckpt = tmp_path / "ckpt"
    rid = runs.start("train", "faq-bot", {"lr": 1e-3, "out": ckpt, "layers": [1, 2]}, str(ckpt))
    assert len(rid) == 32
    info = runs.get(rid)
    assert (info.status, info.kind, info.name) == ("running", "train", "faq-bot")
    assert info.config == {"lr": 1e-3, "out": str(ckpt), "layers": [1, 2]}  # path as text
    assert info.checkpoint_dir == str(ckpt) and info.ended_at is None
    assert info.started_at.tzinfo is not None

    runs.log(rid, 2, {"loss": 1.5, "lr": 0.001})
    runs.log(rid, 1, {"loss": 2.0, "lr": 0.0005})
    runs.log(rid, 3, {"loss": 1.25, "eval_loss": 1.75})
    assert runs.metrics(rid) == {
        "eval_loss": [(3, 1.75)],
        "loss": [(1, 2.0), (2, 1.5), (3, 1.25)],  # ordered by step, not by logging order
        "lr": [(1, 0.0005), (2, 0.001)],
    }

    model = _artifact(any_store, "model", "faq-bot")
    done = runs.finish(rid[:8], "succeeded", artifact=model)  # a prefix is accepted
    assert (done.status, done.artifact_kind, done.artifact_ref) == (
        "succeeded",
        "model",
        "faq-bot:v1",
    )
    assert done.ended_at is not None and done.ended_at >= done.started_at
    assert runs.get(rid[:8]).id == rid and runs.get(rid.upper()).id == rid


def test_list_filters_oldest_first(any_store: Store) -> None:
    runs = Runs(any_store)
    a = runs.start("train", "a", {})
    b = runs.start("eval", "a", {})
    c = runs.start("train", "b", {})
    assert [r.id for r in runs.list()] == [a, b, c]
    assert [r.id for r in runs.list(kind="train")] == [a, c]
    assert [r.id for r in runs.list(name="a")] == [a, b]
    assert [r.id for r in runs.list(kind="train", name="b")] == [c]
    assert runs.list(kind="pipeline") == []


def test_finish_is_validated(any_store: Store) -> None:
    runs = Runs(any_store)
    rid = runs.start("train", "m", {"x": 1})
    with pytest.raises(
        NotFoundError, match=r"run 'deadbeef' not found; recent runs: .*\(train m\)"
    ):
        runs.finish("deadbeef", "failed")
    with pytest.raises(BadInputError, match="succeeded, failed, interrupted"):
        runs.finish(rid, "done")  # type: ignore[arg-type]
    ghost = _artifact(any_store, "model", "real").model_copy(update={"name": "ghost"})
    with pytest.raises(NotFoundError, match="ghost"):
        runs.finish(rid, "succeeded", artifact=ghost)
    assert runs.get(rid).status == "running"  # the failed finish changed nothing

    failed = runs.finish(rid, "failed", error="CUDA out of memory")
    assert (failed.status, failed.error, failed.artifact_ref) == (
        "failed",
        "CUDA out of memory",
        None,
    )
    with pytest.raises(BadInputError, match=r"already finished \(failed at "):
        runs.finish(rid, "succeeded")
    assert runs.get(rid).status == "failed"


def test_concurrent_finishers_one_wins(any_store: Store) -> None:
    runs = Runs(any_store)
    rid = runs.start("train", "m", {})
    statuses = ["succeeded", "failed", "interrupted", "succeeded"]
    barrier = threading.Barrier(len(statuses))
    won: list[str] = []
    lost: list[Exception] = []

    def finish(status: str) -> None:
        barrier.wait()
        try:
            runs.finish(rid, status)  # type: ignore[arg-type]
            won.append(status)
        except BadInputError as exc:
            lost.append(exc)

    threads = [threading.Thread(target=finish, args=(st,)) for st in statuses]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == 3
    assert runs.get(rid).status == won[0]


def test_log_replaces_and_validates(any_store: Store) -> None:
    runs = Runs(any_store)
    rid = runs.start("train", "m", {})
    runs.log(rid, 5, {"loss": 3.0})
    runs.log(rid, 5, {"loss": 2.5, "grad_norm": math.inf})  # a resumed run repeats step 5
    runs.log(rid, 6, {"loss": float("nan")})
    runs.log(rid, 7, {})  # nothing to store
    got = runs.metrics(rid)
    assert got["grad_norm"] == [(5, math.inf)]
    assert got["loss"][0] == (5, 2.5) and got["loss"][1][0] == 6 and math.isnan(got["loss"][1][1])
    assert len(got["loss"]) == 2

    with pytest.raises(BadInputError, match="'loss' at step 8 is not a number"):
        runs.log(rid, 8, {"loss": "low"})  # type: ignore[dict-item]
    with pytest.raises(BadInputError, match="step must be an integer >= 0"):
        runs.log(rid, -1, {"loss": 1.0})
    with pytest.raises(BadInputError, match="invalid metric name"):
        runs.log(rid, 8, {"": 1.0})
    with pytest.raises(NotFoundError, match="recent runs"):
        runs.log(uuid.uuid4().hex, 1, {"loss": 1.0})
    assert list(runs.metrics(rid)) == ["grad_norm", "loss"]  # the rejected calls stored nothing


def test_log_is_one_insert(any_store: Store) -> None:
    runs = Runs(any_store)
    rid = runs.start("train", "m", {})
    statements: list[str] = []

    def record(conn, cursor, statement, params, context, executemany) -> None:  # noqa: ANN001
        statements.append(statement.strip().split()[0].upper())

    event.listen(any_store.engine, "before_cursor_execute", record)
    try:
        runs.log(rid, 10, {f"m{i}": float(i) for i in range(6)})
    finally:
        event.remove(any_store.engine, "before_cursor_execute", record)
    assert statements == ["INSERT"]
    assert runs.metrics(rid)["m5"] == [(10, 5.0)] and len(runs.metrics(rid)) == 6


def test_get_prefix_rules(any_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = iter([uuid.UUID("abcd1111" + "0" * 24), uuid.UUID("abcd2222" + "0" * 24)])
    monkeypatch.setattr("luodi.store.runs.uuid.uuid4", lambda: next(ids))
    runs = Runs(any_store)
    first, second = runs.start("train", "a", {}), runs.start("train", "b", {})
    assert runs.get("abcd1").id == first and runs.get("abcd2222").id == second
    with pytest.raises(BadInputError, match="matches several runs"):
        runs.get("abcd")
    with pytest.raises(NotFoundError):
        runs.get("abc")  # shorter than 4 characters is never a prefix
    with pytest.raises(NotFoundError):
        runs.get("not-hex%")
    with pytest.raises(NotFoundError, match="not found"):
        runs.metrics("ffff")


def test_start_validates(any_store: Store) -> None:
    runs = Runs(any_store)
    with pytest.raises(BadInputError, match="run kind"):
        runs.start("", "m", {})
    with pytest.raises(BadInputError, match="run name"):
        runs.start("train", " ", {})
    with pytest.raises(BadInputError, match="mapping"):
        runs.start("train", "m", [("lr", 1)])  # type: ignore[arg-type]
    assert runs.list() == []


# -- migration 0002 ----------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return request.getfixturevalue("pg_database")


def test_0002_upgrades_a_0001_database_in_place(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    assert not NEW_TABLES & set(inspect(engine).get_table_names())
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO artifacts (kind, name, version, content_hash, path, created_at, "
                "created_by, meta) VALUES ('model', 'old', 1, :h, 'model/old/v1', :at, 'ann', "
                '\'{"note": "kept"}\')'
            ),
            {"h": "ab" * 32, "at": datetime(2026, 1, 2, tzinfo=UTC)},
        )
    engine.dispose()

    store = Store(Settings(home=tmp_path / "home", database_url=db_url))  # upgrades to head
    try:
        [old] = store.list("model")
        assert (old.ref, old.meta, old.created_by) == ("old:v1", {"note": "kept"}, "ann")
        assert NEW_TABLES <= set(inspect(store.engine).get_table_names())
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003"
        from luodi.registry import set_stage, stage_of

        set_stage(store, "old:v1", "production")  # the old row works with the new tables
        assert stage_of(store, "old") == "production"
    finally:
        store.close()


def test_models_match_migrated_schema(any_store: Store) -> None:
    with any_store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    insp = inspect(any_store.engine)
    for table in Base.metadata.sorted_tables:
        have = {c["name"]: c["nullable"] for c in insp.get_columns(table.name)}
        assert have == {c.name: c.nullable for c in table.columns}, table.name
    partial = {i["name"]: i for i in insp.get_indexes("model_stages")}
    assert partial["uq_model_stages_one_production"]["unique"]
    assert partial["uq_model_stages_one_production"]["column_names"] == ["name"]
