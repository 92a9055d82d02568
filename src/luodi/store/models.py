"""SQLAlchemy tables. Every versioned thing (dataset, model, eval run, ...) is an artifact row."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, UniqueConstraint
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
