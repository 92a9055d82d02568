"""Model versions and their stages: candidate → staging → production → archived.

Model versions are store artifacts of kind "model". A version without a stage row is a
candidate. Every change is recorded as a StageEvent (from, to, action, reason, by, at).

Rules (enforced in one transaction per change, serialized per model name):
- At most one version of a name is in production; the database enforces it with a partial
  unique index. Promoting a version to production archives the current one (an event with
  action "displaced").
- Setting the stage a version already has is a no-op that records nothing.
- `rollback(name)` makes production again the version most recently displaced from
  production that nobody has touched since (its latest event is its displacement). So it
  restores the previous production although displacement archived it, but never a version
  someone moved explicitly afterwards (e.g. took out of production with `archive`, or set to
  staging), nor the version a rollback just removed: rolling back twice walks further back
  (v3 → v2 → v1) instead of flipping between two versions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Literal, ParamSpec, TypeVar

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from luodi.errors import BadInputError, NotFoundError
from luodi.store.artifacts import ArtifactInfo, Store, parse_ref
from luodi.store.models import ArtifactRow, ModelStageRow, StageEventRow

MODEL = "model"
CANDIDATE, STAGING, PRODUCTION, ARCHIVED = "candidate", "staging", "production", "archived"
STAGES: tuple[str, ...] = (CANDIDATE, STAGING, PRODUCTION, ARCHIVED)
Stage = Literal["candidate", "staging", "production", "archived"]
Action = Literal["set", "displaced", "rollback"]
_RETRIES = 5
P = ParamSpec("P")
R = TypeVar("R")


class StageEvent(BaseModel):
    """One recorded stage change of a model version."""

    id: int
    name: str
    version: int
    from_stage: Stage
    to_stage: Stage
    action: Action
    reason: str | None = None
    at: datetime
    by: str

    @property
    def ref(self) -> str:
        """`name:vN` of the version that changed."""
        return f"{self.name}:v{self.version}"


class StageChange(BaseModel):
    """The outcome of `set_stage` / `rollback` for the version asked about."""

    name: str
    version: int
    from_stage: Stage
    to_stage: Stage
    changed: bool
    displaced: str | None = None
    events: list[StageEvent] = []

    @property
    def ref(self) -> str:
        """`name:vN` of the version whose stage was set."""
        return f"{self.name}:v{self.version}"


class ModelVersionInfo(BaseModel):
    """A model version with its current stage."""

    name: str
    version: int
    stage: Stage
    stage_updated_at: datetime | None = None
    artifact: ArtifactInfo

    @property
    def ref(self) -> str:
        """`name:vN`."""
        return f"{self.name}:v{self.version}"


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def check_stage(stage: str) -> Stage:
    """`stage` normalised (case, spaces); BadInputError listing the stages otherwise."""
    norm = stage.strip().lower() if isinstance(stage, str) else stage
    if norm not in STAGES:
        raise BadInputError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    return norm  # type: ignore[return-value]


def _split(ref: str) -> tuple[str, int | None, Stage | None]:
    """(name, version or None, stage alias or None) of `name`, `name:vN` or `name@stage`."""
    base, at, alias = ref.strip().partition("@")
    name, version = parse_ref(base)
    if not at:
        return name, version, None
    if version is not None:
        raise BadInputError(f"invalid model reference {ref!r}: use NAME:vN or NAME@STAGE, not both")
    return name, None, check_stage(alias)


# -- reading ---------------------------------------------------------------------------
def _model_row(store: Store, s: Session, ref: str) -> ArtifactRow:
    """store._row for kind model, saying so when the name belongs to another kind."""
    try:
        return store._row(s, MODEL, ref)
    except NotFoundError as exc:
        name = parse_ref(ref)[0]
        kinds = sorted(
            s.execute(
                select(ArtifactRow.kind)
                .where(ArtifactRow.name == name, ArtifactRow.kind != MODEL)
                .distinct()
            ).scalars()
        )
        if not kinds:
            raise
        raise NotFoundError(
            f"{exc.message} ({name!r} is a {' and a '.join(kinds)}, not a model version; "
            "only model versions have stages)"
        ) from None


def _versions_with_stage(s: Session, name: str) -> list[tuple[ArtifactRow, ModelStageRow | None]]:
    rows = s.execute(
        select(ArtifactRow, ModelStageRow)
        .outerjoin(ModelStageRow, ModelStageRow.artifact_id == ArtifactRow.id)
        .where(ArtifactRow.kind == MODEL, ArtifactRow.name == name)
        .order_by(ArtifactRow.version)
    ).all()
    return [(a, st) for a, st in rows]


def _stage(st: ModelStageRow | None) -> Stage:
    return st.stage if st is not None else CANDIDATE  # type: ignore[return-value]


def _resolve_row(store: Store, s: Session, ref: str) -> ArtifactRow:
    name, version, alias = _split(ref)
    if alias is None:
        return _model_row(store, s, f"{name}:v{version}" if version is not None else name)
    _model_row(store, s, name)  # the name must exist before its stages matter
    rows = _versions_with_stage(s, name)
    hits = [a for a, st in rows if _stage(st) == alias]
    if hits:
        return hits[-1]  # the newest version in that stage
    by_stage: dict[str, list[str]] = {}
    for a, st in rows:
        by_stage.setdefault(_stage(st), []).append(f"{name}:v{a.version}")
    have = "; ".join(f"{k}: {', '.join(by_stage[k])}" for k in STAGES if k in by_stage)
    raise NotFoundError(f"no version of model {name!r} is in {alias}; stages with versions: {have}")


def resolve_model(store: Store, ref: str) -> ArtifactInfo:
    """The model version `ref` names: `name` (latest), `name:vN` or `name@STAGE`.

    `name@production` (or staging, candidate, archived) is the newest version in that stage.
    NotFoundError names the versions or known models, or which stages have versions; a
    malformed reference or unknown stage is a BadInputError.
    """
    with store._session() as s:
        return store._info(s, _resolve_row(store, s, ref))


def known_names(store: Store, kind: str) -> str:
    """The names registered of `kind`, for error messages ("none yet" when there are none)."""
    return ", ".join(sorted({a.name for a in store.list(kind)})) or "none yet"


def resolve_model_or_base(
    store: Store, ref: str, what: str = "model", also: str | None = None
) -> ArtifactInfo:
    """The model version `ref` names (NAME, NAME:vN, NAME@STAGE) or, failing that, the base
    model (default, a registered base, an HF folder or GGUF path; registered when new).

    NotFoundError (starting with `what`, e.g. "route model") naming the known models and
    bases, and `also` (what else the caller accepts), when it is neither; a stage alias only
    ever names a model version.
    """
    try:
        return resolve_model(store, ref)
    except BadInputError:  # NotFoundError included; a path or "default" is not a model name
        if "@" in ref:
            raise
    from luodi.models.base import resolve_base  # imports transformers: only when needed

    try:
        return resolve_base(store, ref)
    except NotFoundError:
        raise NotFoundError(
            f"{what} {ref!r} is neither a model version nor a base model; known models: "
            f"{known_names(store, 'model')}; known base models: "
            f"{known_names(store, 'base_model')} (a base can also be 'default' or the path of "
            f"an HF model folder or GGUF file{'; ' + also if also else ''})"
        ) from None


def stage_of(store: Store, ref: str) -> Stage:
    """The current stage of the model version `ref` (candidate when never staged)."""
    with store._session() as s:
        row = _resolve_row(store, s, ref)
        return _stage(s.get(ModelStageRow, row.id))


def _event(e: StageEventRow, a: ArtifactRow) -> StageEvent:
    return StageEvent(
        id=e.id,
        name=a.name,
        version=a.version,
        from_stage=e.from_stage,  # type: ignore[arg-type]
        to_stage=e.to_stage,  # type: ignore[arg-type]
        action=e.action,  # type: ignore[arg-type]
        reason=e.reason,
        at=_utc(e.at),
        by=e.by,
    )


def _events(s: Session, name: str, version: int | None = None) -> list[StageEvent]:
    q = (
        select(StageEventRow, ArtifactRow)
        .join(ArtifactRow, ArtifactRow.id == StageEventRow.artifact_id)
        .where(ArtifactRow.kind == MODEL, ArtifactRow.name == name)
        .order_by(StageEventRow.id)
    )
    if version is not None:
        q = q.where(ArtifactRow.version == version)
    return [_event(e, a) for e, a in s.execute(q).all()]


def history(store: Store, name: str) -> list[StageEvent]:
    """Every stage event of model `name` (or of one version, `name:vN`), oldest first.

    NotFoundError when no such model (version) exists; an empty list when it was never staged.
    """
    base, version, alias = _split(name)
    if alias is not None:
        raise BadInputError(f"history takes NAME or NAME:vN, not a stage alias: {name!r}")
    with store._session() as s:
        _model_row(store, s, f"{base}:v{version}" if version is not None else base)
        return _events(s, base, version)


def versions(store: Store, name: str | None = None) -> list[ModelVersionInfo]:
    """Model versions with their stages, by name then version; all models when `name` is None.

    NotFoundError naming the known models when `name` has no versions.
    """
    if name is not None:
        _, version, alias = _split(name)
        if version is not None or alias is not None:
            raise BadInputError(f"versions takes a model name, not a version: {name!r}")
    with store._session() as s:
        if name is not None:
            _model_row(store, s, name)
        q = (
            select(ArtifactRow, ModelStageRow)
            .outerjoin(ModelStageRow, ModelStageRow.artifact_id == ArtifactRow.id)
            .where(ArtifactRow.kind == MODEL)
            .order_by(ArtifactRow.name, ArtifactRow.version)
        )
        if name is not None:
            q = q.where(ArtifactRow.name == name)
        return [
            ModelVersionInfo(
                name=a.name,
                version=a.version,
                stage=_stage(st),
                stage_updated_at=_utc(st.updated_at) if st is not None else None,
                artifact=store._info(s, a),
            )
            for a, st in s.execute(q).all()
        ]


# -- writing ---------------------------------------------------------------------------
@contextmanager
def _locked(store: Store, name: str) -> Iterator[Session]:
    """A transaction holding the per-name stage lock: stage changes of one name serialize.

    SQLite: BEGIN IMMEDIATE takes the database write lock before anything is read. Others:
    the first version's artifact row FOR NO KEY UPDATE (artifacts never change, so nothing
    else waits on it except other stage changes of the same name; inserts that reference it
    through a foreign key only need KEY SHARE, which does not conflict).
    """
    with store._session() as s, s.begin():
        if s.get_bind().dialect.name == "sqlite":
            s.connection().exec_driver_sql("BEGIN IMMEDIATE")
        else:
            s.execute(
                select(ArtifactRow.id)
                .where(ArtifactRow.kind == MODEL, ArtifactRow.name == name)
                .order_by(ArtifactRow.id)
                .limit(1)
                .with_for_update(key_share=True)
            )
        yield s


def _move(
    s: Session,
    store: Store,
    row: ArtifactRow,
    current: ModelStageRow | None,
    to: Stage,
    action: Action,
    reason: str | None,
    now: datetime,
) -> StageEventRow:
    """Set the stage of `row` and add its event; flushed so the index sees the order."""
    if current is None:
        s.add(ModelStageRow(artifact_id=row.id, name=row.name, stage=to, updated_at=now))
        from_stage: str = CANDIDATE
    else:
        from_stage = current.stage
        current.stage, current.updated_at = to, now
    event = StageEventRow(
        artifact_id=row.id,
        from_stage=from_stage,
        to_stage=to,
        action=action,
        reason=reason,
        at=now,
        by=store.settings.username,
    )
    s.add(event)
    s.flush()
    return event


def _join(prefix: str, reason: str | None) -> str:
    return f"{prefix}; {reason}" if reason else prefix


def _retrying(fn: Callable[P, R]) -> Callable[P, R]:
    """Run a stage change again when a concurrent writer made it hit the unique index."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        for _ in range(_RETRIES - 1):
            try:
                return fn(*args, **kwargs)
            except IntegrityError:
                continue
        return fn(*args, **kwargs)

    return run


@_retrying
def set_stage(store: Store, ref: str, stage: str, reason: str | None = None) -> StageChange:
    """Move the model version `ref` (`name`, `name:vN` or `name@STAGE`) to `stage`.

    Moving a version to production archives the current production version of that name in
    the same transaction (`displaced` names it). Setting the stage a version already has
    records nothing and returns `changed=False`. Unknown stage → BadInputError listing the
    stages; a ref that is not a model version → NotFoundError naming what exists.
    """
    to = check_stage(stage)
    name = _split(ref)[0]
    with _locked(store, name) as s:
        row = _resolve_row(store, s, ref)
        stages = {st.artifact_id: st for _, st in _versions_with_stage(s, name) if st}
        mine = stages.get(row.id)
        before = _stage(mine)
        if before == to:
            return StageChange(
                name=row.name, version=row.version, from_stage=before, to_stage=to, changed=False
            )
        now = datetime.now(UTC)
        events: list[tuple[StageEventRow, ArtifactRow]] = []
        displaced = None
        if to == PRODUCTION:
            for other in stages.values():
                if other.stage == PRODUCTION and other.artifact_id != row.id:
                    old = s.get(ArtifactRow, other.artifact_id)
                    assert old is not None  # the foreign key guarantees it
                    why = _join(f"replaced by {row.name}:v{row.version}", reason)
                    events.append(
                        (_move(s, store, old, other, ARCHIVED, "displaced", why, now), old)
                    )
                    displaced = f"{old.name}:v{old.version}"
        events.append((_move(s, store, row, mine, to, "set", reason, now), row))
        return StageChange(
            name=row.name,
            version=row.version,
            from_stage=before,
            to_stage=to,
            changed=True,
            displaced=displaced,
            events=[_event(e, a) for e, a in events],
        )


@_retrying
def rollback(store: Store, name: str, reason: str | None = None) -> StageChange:
    """Restore the previous production version of model `name`; the current one is archived.

    The target is the version most recently displaced from production and untouched since
    (see the module docstring). BadInputError when nothing of `name` is in production or no
    version qualifies; NotFoundError when there is no model `name`.
    """
    base, version, alias = _split(name)
    if version is not None or alias is not None:
        raise BadInputError(f"rollback takes a model name, not a version: {name!r}")
    with _locked(store, base) as s:
        _model_row(store, s, base)
        rows = _versions_with_stage(s, base)
        by_id = {a.id: (a, st) for a, st in rows}
        live = [(a, st) for a, st in rows if _stage(st) == PRODUCTION]
        if not live:
            raise BadInputError(
                f"no version of model {base!r} is in production; nothing to roll back"
            )
        cur, cur_stage = live[0]
        latest: dict[int, StageEventRow] = {}
        for e in s.execute(
            select(StageEventRow)
            .where(StageEventRow.artifact_id.in_(list(by_id)))
            .order_by(StageEventRow.id)
        ).scalars():
            latest[e.artifact_id] = e
        eligible = [
            e
            for aid, e in latest.items()
            if e.action == "displaced" and aid != cur.id and _stage(by_id[aid][1]) == ARCHIVED
        ]
        if not eligible:
            raise BadInputError(
                f"model {base!r} has no previous production version to roll back to "
                f"({base}:v{cur.version} is the first, or earlier ones were moved since)"
            )
        target, target_stage = by_id[max(eligible, key=lambda e: e.id).artifact_id]
        before = _stage(target_stage)  # archived, by eligibility; read before the move
        now = datetime.now(UTC)
        cur_ref, target_ref = f"{base}:v{cur.version}", f"{base}:v{target.version}"
        out = _move(
            s,
            store,
            cur,
            cur_stage,
            ARCHIVED,
            "rollback",
            _join(f"rolled back to {target_ref}", reason),
            now,
        )
        back = _move(
            s,
            store,
            target,
            target_stage,
            PRODUCTION,
            "rollback",
            _join(f"rolled back from {cur_ref}", reason),
            now,
        )
        return StageChange(
            name=base,
            version=target.version,
            from_stage=before,
            to_stage=PRODUCTION,
            changed=True,
            displaced=cur_ref,
            events=[_event(out, cur), _event(back, target)],
        )
