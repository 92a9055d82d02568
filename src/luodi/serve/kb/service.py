"""The knowledge-base API's work: team scoping, then one call into luodi.rag.kb.

A key sees only its own team's knowledge bases (an admin sees all): another team's is "not
found", exactly like a name that does not exist, so names do not leak across teams.
"""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import ValidationError

from luodi.errors import BadInputError, NotFoundError, PermissionDeniedError
from luodi.rag import kb as K
from luodi.rag.chunk import ChunkConfig
from luodi.rag.embed import EMBEDDERS, open_embedder
from luodi.rag.retrieve import RetrieveConfig
from luodi.serve.auth import Principal, authorize
from luodi.serve.config import validation_message
from luodi.serve.kb.schemas import KBCreate, KBRebuild, KBSearch
from luodi.store import ArtifactInfo, Store, parse_ref


def _actor(p: Principal) -> str:
    return f"{p.name} (key {p.key_id})"


def _team(p: Principal) -> str | None:
    """The team a caller is limited to (None: an admin, every team)."""
    return None if p.role == "admin" else p.team


class KBService:
    """Knowledge-base operations on behalf of an API key."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def visible(self, p: Principal, ref: str) -> ArtifactInfo:
        """Version `ref` when the caller's team owns it (any for an admin); NotFoundError
        naming only the caller's knowledge bases otherwise."""
        name, _ = parse_ref(ref)
        mine = {i.name for i in K.list_kbs(self.store, _team(p))}
        if name in mine:
            return K.resolve_kb(self.store, ref)  # a missing version lists the versions
        raise NotFoundError(
            f"knowledge base {name!r} not found; yours: {', '.join(sorted(mine)) or 'none yet'}"
        )

    def list(self, p: Principal) -> dict[str, Any]:
        authorize(p, "kb.search")
        infos = K.list_kbs(self.store, _team(p))
        return {"object": "list", "data": [i.model_dump(mode="json") for i in infos]}

    def show(self, p: Principal, ref: str) -> dict[str, Any]:
        authorize(p, "kb.search")
        a = self.visible(p, ref)
        return K.show_kb(self.store, a.ref).model_dump(mode="json")

    def create(self, p: Principal, body: KBCreate) -> dict[str, Any]:
        team = body.team or p.team
        authorize(p, "kb.write", team=team)
        _check_embedder(p, body.embedder)
        cfg = K.KBConfig(**{**body.model_dump(), "team": team})
        return K.create_kb(self.store, cfg, actor=_actor(p)).model_dump(mode="json")

    def add(
        self, p: Principal, ref: str, uploads: list[tuple[str, bytes]], tags: list[str]
    ) -> dict[str, Any]:
        """Save the uploaded files in a temporary folder and add them (source = file name)."""
        authorize(p, "kb.write")
        a = self.visible(p, ref)
        authorize(p, "kb.write", team=a.meta.get("team"))
        bad: list[K.Skipped] = []
        with tempfile.TemporaryDirectory(prefix="luodi-upload-") as tmp:
            files: list[K.SourceFile] = []
            for i, (filename, data) in enumerate(uploads):
                name = PurePosixPath((filename or "").replace("\\", "/")).name
                if not name or name.startswith("."):
                    bad.append(K.Skipped(file=filename or "", reason="no usable file name"))
                    continue
                path = Path(tmp) / str(i) / name
                path.parent.mkdir()
                path.write_bytes(data)
                files.append(K.SourceFile(path, name, f"upload:{p.key_id}/{name}"))
            if not files:
                shown = "; ".join(f"{s.file!r}: {s.reason}" for s in bad) or "no files"
                raise BadInputError(f"nothing to add: {shown}")
            change = K.add_files(self.store, a.ref, files, K.tags_of(tags), actor=_actor(p))
        change.skipped = bad + change.skipped
        return change.model_dump(mode="json")

    def delete(self, p: Principal, ref: str, doc: str) -> dict[str, Any]:
        authorize(p, "kb.write")
        a = self.visible(p, ref)
        authorize(p, "kb.write", team=a.meta.get("team"))
        return K.delete_documents(self.store, a.ref, [doc], actor=_actor(p)).model_dump(mode="json")

    def rebuild(self, p: Principal, ref: str, body: KBRebuild) -> dict[str, Any]:
        """The same rebuild as `luodi kb rebuild`: a new version of the knowledge base with
        every document re-chunked and re-embedded (another embedder, chunking or index when
        given). 404 for another team's or a missing one, 409 for an old version."""
        authorize(p, "kb.write")
        a = self.visible(p, ref)
        authorize(p, "kb.write", team=a.meta.get("team"))
        chunk = None
        if body.chunk is not None:
            old = K.config_of(a).chunk.model_dump()
            new = body.chunk.model_dump(exclude_none=True)
            try:
                chunk = ChunkConfig(**{**old, **new})
            except ValidationError as exc:
                raise BadInputError(f"chunk: {validation_message(exc)}") from None
        if body.embedder is not None:
            _check_embedder(p, body.embedder)
            try:
                open_embedder(body.embedder)  # a bad name is the request's fault: 400, not 404
            except NotFoundError as exc:
                raise BadInputError(f"embedder: {exc.message}") from None
        change = K.rebuild(
            self.store, a.ref, body.embedder, chunk=chunk, index=body.index, actor=_actor(p)
        )
        return change.model_dump(mode="json")

    def lineage(self, p: Principal, ref: str) -> dict[str, Any]:
        """Version `ref`, its previous versions and the source files (sha256) behind each."""
        authorize(p, "kb.search")
        a = self.visible(p, ref)
        return self.store.lineage(a.ref, K.KIND).model_dump(mode="json")

    def search(self, p: Principal, ref: str, body: KBSearch) -> dict[str, Any]:
        a = self.visible(p, ref)
        fields = body.model_dump(exclude={"query"}, exclude_none=True)
        kb = K.open_kb(self.store, a.ref)
        hits = kb.search(body.query, RetrieveConfig(**fields))
        return {
            "object": "list",
            "knowledge_base": kb.info.ref,
            "data": [K.hit_dict(kb.info.ref, h) for h in hits],
        }


def _check_embedder(p: Principal, embedder: str) -> None:
    """Only an admin may name an embedder that is not registered: a folder on the server or
    an endpoint would let a key load models or reach hosts of its choosing."""
    if embedder not in EMBEDDERS and p.role != "admin":
        raise PermissionDeniedError(
            f"only an admin may use embedder {embedder!r} (a local folder or an "
            f"endpoint); registered embedders: {', '.join(EMBEDDERS.names())}"
        )
