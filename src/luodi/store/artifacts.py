"""The artifact repository: atomic registration of immutable versions, references, lineage."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from luodi.config import Settings
from luodi.errors import BadInputError, NotFoundError
from luodi.store.db import make_engine, migrate
from luodi.store.hashing import MANIFEST, sha256_dir
from luodi.store.models import ArtifactParentRow, ArtifactRow

_NAME = re.compile(r"^[^\W][\w.\-]{0,127}$")
_REF = re.compile(r"^(?P<name>[^:]+?)(?::v(?P<version>\d+))?$")


def check_name(name: str) -> str:
    """Validate an artifact name (letters, digits, `_ . -`, any script; no `:` `/` `@`)."""
    if not _NAME.match(name):
        raise BadInputError(
            f"invalid name {name!r}: use letters, digits, '_', '.', '-' (max 128), "
            "starting with a letter or digit"
        )
    return name


def parse_ref(ref: str) -> tuple[str, int | None]:
    """Split `name` or `name:vN` into (name, N or None for the latest)."""
    m = _REF.match(ref.strip())
    if not m:
        raise BadInputError(f"invalid reference {ref!r}: expected NAME or NAME:vN")
    name = check_name(m.group("name"))
    version = int(m.group("version")) if m.group("version") else None
    return name, version


class ParentRef(BaseModel):
    """A parent of an artifact as recorded in lineage."""

    kind: str
    name: str
    version: int
    content_hash: str
    role: str = "input"

    @property
    def ref(self) -> str:
        return f"{self.name}:v{self.version}"


class ArtifactInfo(BaseModel):
    """One registered artifact version, as stored in the database and in its manifest."""

    kind: str
    name: str
    version: int
    content_hash: str
    created_at: datetime
    created_by: str
    meta: dict[str, Any]
    parents: list[ParentRef]
    path: Path

    @property
    def ref(self) -> str:
        """`name:vN`."""
        return f"{self.name}:v{self.version}"

    def manifest(self) -> dict[str, Any]:
        """The manifest.json content: the database row's fields, path excluded."""
        return self.model_dump(mode="json", exclude={"path"})


class LineageNode(BaseModel):
    """An artifact with its parents, recursively, down to source files."""

    kind: str
    ref: str
    content_hash: str
    role: str = "self"
    sources: list[dict[str, Any]] = []
    parents: list[LineageNode] = []


@dataclass
class Draft:
    """A version being built: write files into `path`, add to `meta`; registered on exit."""

    kind: str
    name: str
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    artifact: ArtifactInfo | None = None


class Store:
    """Repository API over the metadata database and the artifact root."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.root = self.settings.artifacts
        self.engine = make_engine(self.settings.db_url)
        migrate(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        """Release database connections."""
        self.engine.dispose()

    # -- reading -----------------------------------------------------------------------
    def _info(self, s: Session, row: ArtifactRow) -> ArtifactInfo:
        parents = s.execute(
            select(ArtifactRow, ArtifactParentRow.role)
            .join(ArtifactParentRow, ArtifactParentRow.parent_id == ArtifactRow.id)
            .where(ArtifactParentRow.child_id == row.id)
            .order_by(ArtifactRow.id)
        ).all()
        created = row.created_at
        if created.tzinfo is None:  # SQLite drops the zone; values are stored in UTC
            created = created.replace(tzinfo=UTC)
        return ArtifactInfo(
            kind=row.kind,
            name=row.name,
            version=row.version,
            content_hash=row.content_hash,
            created_at=created,
            created_by=row.created_by,
            meta=row.meta or {},
            parents=[
                ParentRef(
                    kind=p.kind,
                    name=p.name,
                    version=p.version,
                    content_hash=p.content_hash,
                    role=role,
                )
                for p, role in parents
            ],
            path=self.root / row.path,
        )

    def _row(self, s: Session, kind: str, ref: str) -> ArtifactRow:
        name, version = parse_ref(ref)
        q = select(ArtifactRow).where(ArtifactRow.kind == kind, ArtifactRow.name == name)
        if version is None:
            row = s.execute(q.order_by(ArtifactRow.version.desc()).limit(1)).scalar()
        else:
            row = s.execute(q.where(ArtifactRow.version == version)).scalar()
        if row is None:
            versions = s.execute(
                select(ArtifactRow.version)
                .where(ArtifactRow.kind == kind, ArtifactRow.name == name)
                .order_by(ArtifactRow.version)
            ).scalars()
            have = [f"{name}:v{v}" for v in versions]
            if have:
                raise NotFoundError(f"{kind} {ref!r} not found; versions: {', '.join(have)}")
            names = s.execute(
                select(ArtifactRow.name).where(ArtifactRow.kind == kind).distinct()
            ).scalars()
            known = ", ".join(sorted(names)) or "none yet"
            raise NotFoundError(f"{kind} {name!r} not found; known {kind}s: {known}")
        return row

    def resolve(self, ref: str, kind: str) -> ArtifactInfo:
        """The artifact `ref` (`name` = latest, or `name:vN`) of `kind`; NotFoundError otherwise."""
        with self._session() as s:
            return self._info(s, self._row(s, kind, ref))

    def list(self, kind: str | None = None, name: str | None = None) -> list[ArtifactInfo]:
        """All versions, optionally of one kind and name, oldest first."""
        with self._session() as s:
            q = select(ArtifactRow).order_by(
                ArtifactRow.kind, ArtifactRow.name, ArtifactRow.version
            )
            if kind:
                q = q.where(ArtifactRow.kind == kind)
            if name:
                q = q.where(ArtifactRow.name == name)
            return [self._info(s, r) for r in s.execute(q).scalars()]

    def lineage(self, ref: str, kind: str) -> LineageNode:
        """The tree of parents of `ref`, each node with the source files it records."""

        def walk(info: ArtifactInfo, role: str) -> LineageNode:
            return LineageNode(
                kind=info.kind,
                ref=info.ref,
                content_hash=info.content_hash,
                role=role,
                sources=info.meta.get("sources", []),
                parents=[walk(self.resolve(p.ref, p.kind), p.role) for p in info.parents],
            )

        return walk(self.resolve(ref, kind), "self")

    # -- writing -----------------------------------------------------------------------
    @contextmanager
    def create(
        self,
        kind: str,
        name: str,
        *,
        parents: Sequence[ArtifactInfo | tuple[ArtifactInfo, str]] = (),
        meta: dict[str, Any] | None = None,
    ) -> Iterator[Draft]:
        """Build a new version of `kind`/`name` and register it atomically.

        The body writes into `draft.path` (a temporary folder beside the final one). On a clean
        exit the next version number is reserved, the folder renamed to `v<N>` with its
        manifest, and the row inserted, in one transaction; on any failure the folder and the
        row are both gone. `draft.artifact` holds the result afterwards.
        """
        check_name(name)
        base = self.root / kind / name
        base.mkdir(parents=True, exist_ok=True)
        tmp = base / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        draft = Draft(kind=kind, name=name, path=tmp, meta=dict(meta or {}))
        try:
            yield draft
            draft.artifact = self._register(draft, parents)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _register(
        self, draft: Draft, parents: Sequence[ArtifactInfo | tuple[ArtifactInfo, str]]
    ) -> ArtifactInfo:
        content_hash = sha256_dir(draft.path)
        edges: list[tuple[ArtifactInfo, str]] = []
        for p in parents:  # one edge per parent (the first role given wins)
            info, role = (p, "input") if isinstance(p, ArtifactInfo) else p
            if all((e.kind, e.ref) != (info.kind, info.ref) for e, _ in edges):
                edges.append((info, role))
        for _attempt in range(5):  # another writer may take the same number; retry
            final: Path | None = None
            with self._session() as s:
                try:
                    with s.begin():
                        parent_rows = [(self._row(s, p.kind, p.ref), role) for p, role in edges]
                        latest = s.execute(
                            select(func.max(ArtifactRow.version)).where(
                                ArtifactRow.kind == draft.kind, ArtifactRow.name == draft.name
                            )
                        ).scalar()
                        version = (latest or 0) + 1
                        rel = f"{draft.kind}/{draft.name}/v{version}"
                        row = ArtifactRow(
                            kind=draft.kind,
                            name=draft.name,
                            version=version,
                            content_hash=content_hash,
                            path=rel,
                            created_at=datetime.now(UTC),
                            created_by=self.settings.username,
                            meta=draft.meta,
                        )
                        s.add(row)
                        s.flush()
                        for prow, role in parent_rows:
                            s.add(ArtifactParentRow(child_id=row.id, parent_id=prow.id, role=role))
                        s.flush()
                        info = self._info(s, row)
                        (draft.path / MANIFEST).write_text(
                            json.dumps(info.manifest(), ensure_ascii=False, indent=2),
                            encoding="utf-8",
                        )
                        final = self.root / rel
                        if final.exists():  # left over by a crash before its row committed
                            shutil.rmtree(final)
                        os.rename(draft.path, final)
                    return info
                except IntegrityError:
                    if final is not None and final.exists():
                        os.rename(final, draft.path)
                    continue
                except BaseException:
                    if final is not None and final.exists():
                        shutil.rmtree(final, ignore_errors=True)
                    raise
        raise BadInputError(f"could not reserve a version for {draft.name!r}; try again")
