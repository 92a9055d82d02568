"""SQLAlchemy tables. Every versioned thing (dataset, model, eval run, ...) is an artifact row."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of luodi's tables (Alembic migrations mirror it)."""


class ArtifactRow(Base):
    """One immutable version `name:vN` of an artifact of some kind."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("kind", "name", "version", name="uq_artifact_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(200))
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ArtifactParentRow(Base):
    """An edge of the lineage graph: `child` was made from `parent` (in some role)."""

    __tablename__ = "artifact_parents"

    child_id: Mapped[int] = mapped_column(
        ForeignKey("artifacts.id", ondelete="CASCADE"), primary_key=True
    )
    parent_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), default="input")


# One production version per model name, enforced by the database itself: a partial unique
# index over the rows in stage 'production' (both SQLite and PostgreSQL support it).
_PRODUCTION = text("stage = 'production'")


class ModelStageRow(Base):
    """The current stage of a model version; a version without a row is a candidate.

    `name` repeats the artifact's name (artifacts are immutable, so it never drifts) so the
    partial unique index can allow only one production row per name.
    """

    __tablename__ = "model_stages"
    __table_args__ = (
        Index(
            "uq_model_stages_one_production",
            "name",
            unique=True,
            sqlite_where=_PRODUCTION,
            postgresql_where=_PRODUCTION,
        ),
    )

    artifact_id: Mapped[int] = mapped_column(
        ForeignKey("artifacts.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(200), index=True)
    stage: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StageEventRow(Base):
    """One stage change of a model version: who moved it from where to where, when and why.

    `action` tells an explicit change ("set") from a production version displaced by a newer
    one ("displaced") and the two sides of a rollback ("rollback"); rollback relies on it.
    """

    __tablename__ = "stage_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    artifact_id: Mapped[int] = mapped_column(
        ForeignKey("artifacts.id", ondelete="CASCADE"), index=True
    )
    from_stage: Mapped[str] = mapped_column(String(16))
    to_stage: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    by: Mapped[str] = mapped_column(String(200))


class RunRow(Base):
    """A training (or other long) run: its config, status and the artifact it produced."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    artifact_id: Mapped[int | None] = mapped_column(ForeignKey("artifacts.id", ondelete="SET NULL"))
    checkpoint_dir: Mapped[str | None] = mapped_column(String(1000))
    error: Mapped[str | None] = mapped_column(Text)


class RunMetricRow(Base):
    """One metric value of a run at one step; a value logged again for a step replaces it.

    `value` is NULL for NaN: SQLite stores a NaN float as NULL, so both backends agree on it.
    """

    __tablename__ = "run_metrics"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# -- serving: teams, API keys, usage, request logs, feedback (migration 0003) -----------------
# Usage rows and request logs grow with traffic, so their ids are 64-bit on PostgreSQL (SQLite's
# INTEGER PRIMARY KEY is already 64-bit and must stay INTEGER to autoincrement).
_BIGID = BigInteger().with_variant(Integer, "sqlite")


class TeamRow(Base):
    """A team: API keys, deployments and usage belong to one."""

    __tablename__ = "teams"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(200))


class ApiKeyRow(Base):
    """An API key: only a salted hash of its secret is stored, never the secret itself."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    team: Mapped[str] = mapped_column(ForeignKey("teams.name"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    salt: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    endpoints: Mapped[list[str] | None] = mapped_column(JSON)
    rpm: Mapped[int | None] = mapped_column(Integer)
    tokens_per_day: Mapped[int | None] = mapped_column(BigInteger)
    tokens_per_month: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(200))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class UsageRow(Base):
    """One served request for metering and billing: who, which version, tokens, latency."""

    __tablename__ = "usage_records"
    __table_args__ = (
        # quota baselines and per-key reports scan one key over a period
        Index("ix_usage_records_key_id_at", "key_id", "at"),
        Index("ix_usage_records_team_at", "team", "at"),
    )

    id: Mapped[int] = mapped_column(_BIGID, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    key_id: Mapped[str] = mapped_column(String(64))
    team: Mapped[str] = mapped_column(String(128))
    deployment: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(300))
    endpoint: Mapped[str] = mapped_column(String(64))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    status: Mapped[int] = mapped_column(Integer)
    error_type: Mapped[str | None] = mapped_column(String(64))


class RequestLogRow(Base):
    """What a request asked and got, PII-masked before it was written; deleted after the
    retention period (usage rows are kept for billing)."""

    __tablename__ = "request_logs"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    key_id: Mapped[str] = mapped_column(String(64), index=True)
    team: Mapped[str] = mapped_column(String(128), index=True)
    deployment: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(300))
    endpoint: Mapped[str] = mapped_column(String(64))
    prompt_masked: Mapped[str] = mapped_column(Text)
    response_masked: Mapped[str] = mapped_column(Text)
    retrieved: Mapped[list[str]] = mapped_column(JSON)
    guard: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    status: Mapped[int] = mapped_column(Integer)


class FeedbackRow(Base):
    """A user's rating, correction or comment on one served request.

    `request_id` is not a foreign key: request logs are purged after the retention period and
    the feedback (training data for the next version) must outlive them.
    """

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(_BIGID, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    key_id: Mapped[str] = mapped_column(String(64), index=True)
    team: Mapped[str] = mapped_column(String(128), index=True)
    rating_raw: Mapped[str | None] = mapped_column(String(64))
    scale: Mapped[str | None] = mapped_column(String(16))
    rating: Mapped[float | None] = mapped_column(Float)
    correction: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)
