"""Runs: a long job's config, status and per-step metrics, kept in the metadata store.

A run starts as "running" and is finished exactly once as succeeded, failed or interrupted.
Metrics are `(step, key) -> value`; logging a key again for the same step replaces its value
(a resumed run may repeat steps after its last checkpoint).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import Engine, Select, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from luodi.errors import BadInputError, NotFoundError
from luodi.store.artifacts import ArtifactInfo, Store
from luodi.store.models import ArtifactRow, RunMetricRow, RunRow

RUNNING = "running"
FINISHED = ("succeeded", "failed", "interrupted")
RunStatus = Literal["running", "succeeded", "failed", "interrupted"]
_HEX = re.compile(r"^[0-9a-f]{1,32}$")
_MIN_PREFIX = 4


class RunInfo(BaseModel):
    """One run as stored: what ran, how it ended and what it registered."""

    id: str
    kind: str
    name: str
    status: RunStatus
    config: dict[str, Any]
    started_at: datetime
    ended_at: datetime | None = None
    artifact_kind: str | None = None
    artifact_ref: str | None = None
    checkpoint_dir: str | None = None
    error: str | None = None

    @property
    def short_id(self) -> str:
        """The first 8 characters of the id, enough to refer to the run in practice."""
        return self.id[:8]


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite drops the zone; we store UTC
        return value.replace(tzinfo=UTC)
    return value


# One multi-row INSERT ... VALUES (...), (...) per `log` call: a single round trip.
def _upsert_sqlite(engine: Engine, rows: list[dict[str, Any]]) -> None:
    stmt = sqlite_insert(RunMetricRow).values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=["run_id", "step", "key"],
        set_={"value": stmt.excluded.value, "at": stmt.excluded.at},
    )
    with engine.begin() as conn:
        conn.execute(stmt)


def _upsert_postgresql(engine: Engine, rows: list[dict[str, Any]]) -> None:
    stmt = pg_insert(RunMetricRow).values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=["run_id", "step", "key"],
        set_={"value": stmt.excluded.value, "at": stmt.excluded.at},
    )
    with engine.begin() as conn:
        conn.execute(stmt)


def _replace_generic(engine: Engine, rows: list[dict[str, Any]]) -> None:
    # Databases without an upsert SQLAlchemy knows: delete what is replaced, then insert.
    first = rows[0]
    with engine.begin() as conn:
        conn.execute(
            delete(RunMetricRow).where(
                RunMetricRow.run_id == first["run_id"],
                RunMetricRow.step == first["step"],
                RunMetricRow.key.in_([r["key"] for r in rows]),
            )
        )
        conn.execute(insert(RunMetricRow).values(rows))


_WRITERS: dict[str, Callable[[Engine, list[dict[str, Any]]], None]] = {
    "sqlite": _upsert_sqlite,
    "postgresql": _upsert_postgresql,
}


class Runs:
    """Repository of runs over a store's database."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._write_metrics = _WRITERS.get(store.engine.dialect.name, _replace_generic)

    # -- writing -----------------------------------------------------------------------
    def start(
        self,
        kind: str,
        name: str,
        config: Mapping[str, Any],
        checkpoint_dir: str | Path | None = None,
    ) -> str:
        """Record a new running run and return its id (32 hex characters).

        `config` is stored as JSON (values JSON cannot hold, such as paths, as their text);
        an empty kind or name, or a config that is not a mapping, is a BadInputError.
        """
        if not kind or not kind.strip() or len(kind) > 32:
            raise BadInputError(f"invalid run kind {kind!r}: give 1 to 32 characters")
        if not name or not name.strip() or len(name) > 200:
            raise BadInputError(f"invalid run name {name!r}: give 1 to 200 characters")
        if not isinstance(config, Mapping):
            raise BadInputError(f"a run config must be a mapping, not {type(config).__name__}")
        try:
            stored = json.loads(json.dumps(dict(config), default=str, allow_nan=True))
        except (TypeError, ValueError) as exc:  # e.g. non-string keys that JSON cannot hold
            raise BadInputError(f"the run config cannot be stored as JSON: {exc}") from exc
        run_id = uuid.uuid4().hex
        with self.store._session() as s, s.begin():
            s.add(
                RunRow(
                    id=run_id,
                    kind=kind,
                    name=name,
                    status=RUNNING,
                    config=stored,
                    started_at=datetime.now(UTC),
                    checkpoint_dir=str(checkpoint_dir) if checkpoint_dir is not None else None,
                )
            )
        return run_id

    def log(self, run_id: str, step: int, metrics: Mapping[str, float]) -> None:
        """Store `metrics` of run `run_id` (its full id) at `step`, in one multi-row INSERT.

        A key logged again at the same step replaces the value; NaN is stored (as NULL) and
        read back as NaN. Metrics may be logged after the run finished (e.g. a final eval).
        A negative or non-integer step, an empty key or a non-numeric value is a
        BadInputError; an unknown run is a NotFoundError.
        """
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise BadInputError(f"a metric step must be an integer >= 0, got {step!r}")
        if not metrics:
            return
        now = datetime.now(UTC)
        rows = []
        for key, raw in metrics.items():
            if not isinstance(key, str) or not key or len(key) > 200:
                raise BadInputError(f"invalid metric name {key!r}: give 1 to 200 characters")
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise BadInputError(
                    f"metric {key!r} at step {step} is not a number: {raw!r}"
                ) from None
            rows.append(
                {
                    "run_id": run_id,
                    "step": step,
                    "key": key,
                    "value": None if math.isnan(value) else value,
                    "at": now,
                }
            )
        try:
            self._write_metrics(self.store.engine, rows)
        except IntegrityError:  # the foreign key: no such run
            raise self._not_found(run_id) from None

    def finish(
        self,
        run_id: str,
        status: Literal["succeeded", "failed", "interrupted"],
        artifact: ArtifactInfo | None = None,
        error: str | None = None,
    ) -> RunInfo:
        """End a running run with `status`, the artifact it registered and an error message.

        Only a running run can finish, once: finishing it again is a BadInputError saying how
        it ended (the check and the update are one conditional UPDATE, so two finishers cannot
        both win). An unknown run or artifact is a NotFoundError; an unknown status a
        BadInputError listing the valid ones. Accepts an id prefix like `get`.
        """
        if status not in FINISHED:
            raise BadInputError(
                f"unknown run status {status!r}; a run finishes as one of: {', '.join(FINISHED)}"
            )
        with self.store._session() as s, s.begin():
            row = self._find(s, run_id)
            artifact_id = None
            if artifact is not None:
                artifact_id = self.store._row(s, artifact.kind, artifact.ref).id
            done = s.execute(
                update(RunRow)
                .where(RunRow.id == row.id, RunRow.status == RUNNING)
                .values(
                    status=status,
                    ended_at=datetime.now(UTC),
                    artifact_id=artifact_id,
                    error=error,
                )
                .execution_options(synchronize_session=False)
            )
            if done.rowcount == 0:
                s.refresh(row)
                ended = _utc(row.ended_at)
                when = f" at {ended.isoformat(timespec='seconds')}" if ended else ""
                raise BadInputError(
                    f"run {row.id[:8]} already finished ({row.status}{when}); "
                    "a run finishes once — start a new run to train again"
                )
            full_id = row.id
        return self.get(full_id)

    # -- reading -----------------------------------------------------------------------
    def get(self, run_id: str) -> RunInfo:
        """The run with id `run_id` or with a unique id prefix of at least 4 characters.

        NotFoundError (naming the most recent runs) when nothing matches; BadInputError
        listing the candidates when a prefix matches several runs.
        """
        with self.store._session() as s:
            return self._info(s, self._find(s, run_id))

    def list(self, kind: str | None = None, name: str | None = None) -> list[RunInfo]:
        """All runs, optionally of one kind and name, oldest first."""
        with self.store._session() as s:
            q = self._select().order_by(RunRow.started_at, RunRow.id)
            if kind:
                q = q.where(RunRow.kind == kind)
            if name:
                q = q.where(RunRow.name == name)
            return [self._to_info(*r) for r in s.execute(q).all()]

    def metrics(self, run_id: str) -> dict[str, list[tuple[int, float]]]:
        """Every metric series of a run: key -> [(step, value), ...] ordered by step.

        Keys are sorted by name; NULL values (NaN logged) come back as NaN. Accepts an id
        prefix like `get`; an unknown run is a NotFoundError.
        """
        with self.store._session() as s:
            full_id = self._find(s, run_id).id
            rows = s.execute(
                select(RunMetricRow.key, RunMetricRow.step, RunMetricRow.value)
                .where(RunMetricRow.run_id == full_id)
                .order_by(RunMetricRow.key, RunMetricRow.step)
            ).all()
        series: dict[str, list[tuple[int, float]]] = {}
        for key, step, value in rows:
            series.setdefault(key, []).append((step, math.nan if value is None else value))
        return series

    # -- helpers -----------------------------------------------------------------------
    def _find(self, s: Session, run_id: str) -> RunRow:
        ref = run_id.strip().lower()
        if _HEX.match(ref):
            row = s.get(RunRow, ref)
            if row is not None:
                return row
            if len(ref) >= _MIN_PREFIX:
                rows = list(
                    s.execute(select(RunRow).where(RunRow.id.startswith(ref)).limit(6)).scalars()
                )
                if len(rows) == 1:
                    return rows[0]
                if rows:
                    ids = ", ".join(r.id[:12] for r in rows[:5])
                    raise BadInputError(
                        f"run id prefix {run_id!r} matches several runs ({ids}); give more "
                        "characters"
                    )
        raise self._not_found(run_id, s)

    def _not_found(self, run_id: str, s: Session | None = None) -> NotFoundError:
        def recent(sess: Session) -> list[str]:
            q = select(RunRow.id, RunRow.kind, RunRow.name).order_by(RunRow.started_at.desc())
            return [f"{i[:8]} ({k} {n})" for i, k, n in sess.execute(q.limit(5)).all()]

        if s is None:
            with self.store._session() as sess:
                have = recent(sess)
        else:
            have = recent(s)
        known = ", ".join(have) if have else "none yet"
        return NotFoundError(f"run {run_id!r} not found; recent runs: {known}")

    @staticmethod
    def _select() -> Select[Any]:
        return select(RunRow, ArtifactRow.kind, ArtifactRow.name, ArtifactRow.version).outerjoin(
            ArtifactRow, ArtifactRow.id == RunRow.artifact_id
        )

    def _info(self, s: Session, row: RunRow) -> RunInfo:
        return self._to_info(*s.execute(self._select().where(RunRow.id == row.id)).one())

    @staticmethod
    def _to_info(row: RunRow, a_kind: str | None, a_name: str | None, a_ver: int | None) -> RunInfo:
        return RunInfo(
            id=row.id,
            kind=row.kind,
            name=row.name,
            status=row.status,  # type: ignore[arg-type]  # only valid statuses are written
            config=row.config or {},
            started_at=_utc(row.started_at),
            ended_at=_utc(row.ended_at),
            artifact_kind=a_kind,
            artifact_ref=f"{a_name}:v{a_ver}" if a_name is not None else None,
            checkpoint_dir=row.checkpoint_dir,
            error=row.error,
        )
