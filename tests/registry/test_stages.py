"""Model stages: promotion, one production per name, history, rollback, stage references."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy.exc import IntegrityError

from luodi.errors import BadInputError, NotFoundError
from luodi.registry import (
    STAGES,
    history,
    resolve_model,
    rollback,
    set_stage,
    stage_of,
    versions,
)
from luodi.store import Store
from luodi.store.models import ArtifactRow, ModelStageRow


def _models(store: Store, name: str, n: int) -> list[str]:
    refs = []
    for i in range(n):
        with store.create("model", name) as d:
            (d.path / "adapter.bin").write_text(f"{name}-{i}", encoding="utf-8")
        refs.append(d.artifact.ref)
    return refs


def _stages(store: Store, name: str) -> dict[str, str]:
    return {v.ref: v.stage for v in versions(store, name)}


def test_promote_archives_the_previous_production(any_store: Store) -> None:
    v1, v2, v3 = _models(any_store, "faq", 3)
    assert _stages(any_store, "faq") == {v1: "candidate", v2: "candidate", v3: "candidate"}

    ch = set_stage(any_store, v1, "staging", reason="passed eval")
    assert (ch.ref, ch.from_stage, ch.to_stage, ch.changed, ch.displaced) == (
        v1,
        "candidate",
        "staging",
        True,
        None,
    )
    set_stage(any_store, v1, "production")
    ch = set_stage(any_store, v2, "PRODUCTION ", reason="better on gate")  # case/space tolerant
    assert ch.displaced == v1 and ch.from_stage == "candidate"
    assert [(e.ref, e.from_stage, e.to_stage, e.action) for e in ch.events] == [
        (v1, "production", "archived", "displaced"),
        (v2, "candidate", "production", "set"),
    ]
    assert ch.events[0].reason == "replaced by faq:v2; better on gate"
    assert _stages(any_store, "faq") == {v1: "archived", v2: "production", v3: "candidate"}
    assert (
        stage_of(any_store, "faq:v2") == "production" and stage_of(any_store, "faq") == "candidate"
    )

    events = history(any_store, "faq")
    user = any_store.settings.username
    assert [(e.ref, e.from_stage, e.to_stage, e.action, e.by) for e in events] == [
        (v1, "candidate", "staging", "set", user),
        (v1, "staging", "production", "set", user),
        (v1, "production", "archived", "displaced", user),
        (v2, "candidate", "production", "set", user),
    ]
    assert events[0].reason == "passed eval" and events[1].reason is None
    assert events[0].at <= events[-1].at and events[0].at.tzinfo is not None
    assert [e.to_stage for e in history(any_store, "faq:v1")] == [
        "staging",
        "production",
        "archived",
    ]
    assert history(any_store, "faq:v3") == []


def test_same_stage_is_a_noop(any_store: Store) -> None:
    (v1,) = _models(any_store, "faq", 1)
    ch = set_stage(any_store, v1, "candidate")  # a version without a row is a candidate
    assert not ch.changed and ch.events == [] and history(any_store, "faq") == []
    set_stage(any_store, v1, "production")
    ch = set_stage(any_store, v1, "production", reason="again")
    assert (ch.changed, ch.from_stage, ch.to_stage, ch.displaced) == (
        False,
        "production",
        "production",
        None,
    )
    assert len(history(any_store, "faq")) == 1


def test_bad_references_and_stages(any_store: Store) -> None:
    _models(any_store, "faq", 2)
    with any_store.create("dataset", "docs") as d:
        (d.path / "data.txt").write_text("x", encoding="utf-8")

    with pytest.raises(BadInputError, match="stages: candidate, staging, production, archived"):
        set_stage(any_store, "faq:v1", "live")
    with pytest.raises(NotFoundError, match="'docs' is a dataset, not a model version"):
        set_stage(any_store, "docs", "production")
    with pytest.raises(NotFoundError, match="versions: faq:v1, faq:v2"):
        set_stage(any_store, "faq:v7", "staging")
    with pytest.raises(NotFoundError, match="known models: faq"):
        stage_of(any_store, "nope")
    with pytest.raises(NotFoundError, match="known models: faq"):
        history(any_store, "nope")
    with pytest.raises(NotFoundError, match="known models: faq"):
        versions(any_store, "nope")
    with pytest.raises(BadInputError, match="takes a model name"):
        versions(any_store, "faq:v1")
    assert history(any_store, "faq") == []  # nothing was recorded by the failures
    _models(any_store, "alpha", 1)
    all_versions = versions(any_store)  # every model, by name then version; datasets excluded
    assert [(v.ref, v.stage, v.artifact.kind) for v in all_versions] == [
        ("alpha:v1", "candidate", "model"),
        ("faq:v1", "candidate", "model"),
        ("faq:v2", "candidate", "model"),
    ]
    assert STAGES == ("candidate", "staging", "production", "archived")


def test_resolve_stage_references(any_store: Store) -> None:
    v1, v2, v3, v4 = _models(any_store, "bot", 4)
    set_stage(any_store, v1, "staging")
    set_stage(any_store, v3, "staging")
    set_stage(any_store, v2, "production")
    assert resolve_model(any_store, "bot").ref == v4  # bare name: latest version
    assert resolve_model(any_store, "bot:v2").ref == v2
    assert resolve_model(any_store, "bot@production").ref == v2
    assert resolve_model(any_store, "bot@staging").ref == v3  # newest in that stage
    assert resolve_model(any_store, "bot@candidate").ref == v4
    assert resolve_model(any_store, "bot@production").kind == "model"
    with pytest.raises(
        NotFoundError,
        match=r"no version of model 'bot' is in archived; stages with versions: "
        r"candidate: bot:v4; staging: bot:v1, bot:v3; production: bot:v2",
    ):
        resolve_model(any_store, "bot@archived")
    with pytest.raises(BadInputError, match="stages: candidate"):
        resolve_model(any_store, "bot@prod")
    with pytest.raises(BadInputError, match="not both"):
        resolve_model(any_store, "bot:v1@staging")
    with pytest.raises(NotFoundError, match="known models: bot"):
        resolve_model(any_store, "other@production")

    ch = set_stage(any_store, "bot@staging", "production")  # promote what is in staging
    assert ch.ref == v3 and ch.displaced == v2
    assert resolve_model(any_store, "bot@production").ref == v3


def test_rollback_walks_back_through_production_history(any_store: Store) -> None:
    v1, v2, v3 = _models(any_store, "faq", 3)
    with pytest.raises(BadInputError, match="nothing to roll back"):
        rollback(any_store, "faq")
    for v in (v1, v2, v3):
        set_stage(any_store, v, "production")

    ch = rollback(any_store, "faq", reason="v3 answers in English")
    assert (ch.ref, ch.from_stage, ch.to_stage, ch.displaced) == (v2, "archived", "production", v3)
    assert [(e.ref, e.to_stage, e.action) for e in ch.events] == [
        (v3, "archived", "rollback"),
        (v2, "production", "rollback"),
    ]
    assert ch.events[1].reason == "rolled back from faq:v3; v3 answers in English"
    assert _stages(any_store, "faq") == {v1: "archived", v2: "production", v3: "archived"}

    assert rollback(any_store, "faq").ref == v1  # further back, not back to v3
    assert _stages(any_store, "faq") == {v1: "production", v2: "archived", v3: "archived"}
    with pytest.raises(BadInputError, match="no previous production version"):
        rollback(any_store, "faq")
    with pytest.raises(BadInputError, match="takes a model name"):
        rollback(any_store, "faq:v1")
    with pytest.raises(NotFoundError, match="known models: faq"):
        rollback(any_store, "nope")


def test_rollback_skips_versions_moved_explicitly(any_store: Store) -> None:
    v1, v2, v3 = _models(any_store, "faq", 3)
    for v in (v1, v2, v3):
        set_stage(any_store, v, "production")
    # v2 was displaced by v3, then someone took it out of consideration on purpose.
    set_stage(any_store, v2, "staging", reason="found a leak")
    set_stage(any_store, v2, "archived", reason="found a leak")
    assert rollback(any_store, "faq").ref == v1
    assert _stages(any_store, "faq") == {v1: "production", v2: "archived", v3: "archived"}

    # A production version archived explicitly leaves no production: nothing to roll back.
    set_stage(any_store, v1, "archived")
    with pytest.raises(BadInputError, match="nothing to roll back"):
        rollback(any_store, "faq")


def test_database_enforces_one_production_per_name(any_store: Store) -> None:
    v1, v2 = _models(any_store, "faq", 2)
    set_stage(any_store, v1, "production")
    with any_store._session() as s:
        row = s.query(ArtifactRow).filter_by(kind="model", name="faq", version=2).one()
        s.add(
            ModelStageRow(
                artifact_id=row.id, name="faq", stage="production", updated_at=row.created_at
            )
        )
        with pytest.raises(IntegrityError):
            s.commit()
    assert _stages(any_store, "faq") == {v1: "production", v2: "candidate"}


def _check_event_chain(store: Store, name: str) -> None:
    """Replaying the events gives the stored stages and never two productions at once."""
    replay = {v.ref: "candidate" for v in versions(store, name)}
    for e in history(store, name):
        assert replay[e.ref] == e.from_stage, e
        replay[e.ref] = e.to_stage
        assert sum(st == "production" for st in replay.values()) <= 1
    assert replay == _stages(store, name)


def _race(*calls: tuple) -> list[BaseException]:
    """Run each (function, *args) in its own thread, released together; the errors raised."""
    barrier = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(fn, *args) -> None:  # noqa: ANN001, ANN002
        barrier.wait()
        try:
            fn(*args)
        except BaseException as exc:  # reported by the callers' assertions
            errors.append(exc)

    threads = [threading.Thread(target=run, args=call) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_concurrent_promotions_leave_one_production(any_store: Store) -> None:
    for name in ("m1", "m2", "m3"):
        refs = _models(any_store, name, 4)
        assert _race(*[(set_stage, any_store, r, "production") for r in refs]) == []
        stages = _stages(any_store, name)
        assert sorted(stages.values()) == ["archived", "archived", "archived", "production"]
        events = history(any_store, name)
        sets = [e for e in events if e.action == "set"]
        assert len(sets) == 4 and len([e for e in events if e.action == "displaced"]) == 3
        assert stages[sets[-1].ref] == "production"  # the last promotion wins
        _check_event_chain(any_store, name)


def test_concurrent_promotion_and_rollback(any_store: Store) -> None:
    v1, v2, v3, v4 = _models(any_store, "faq", 4)
    for v in (v1, v2, v3):
        set_stage(any_store, v, "production")
    errors = _race((rollback, any_store, "faq"), (set_stage, any_store, v4, "production"))
    assert errors == []
    assert list(_stages(any_store, "faq").values()).count("production") == 1
    _check_event_chain(any_store, "faq")


def test_concurrent_changes_of_one_version_keep_a_true_history(any_store: Store) -> None:
    (v1,) = _models(any_store, "faq", 1)
    for _round in range(3):
        calls = [(set_stage, any_store, v1, st) for st in ("staging", "archived", "candidate")]
        assert _race(*calls) == []
        _check_event_chain(any_store, "faq")  # each event starts where the previous one ended
