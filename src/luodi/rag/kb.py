"""Knowledge bases: versioned, searchable collections of a team's documents.

`create_kb` makes version 1 (empty). `add_documents`, `delete_documents` and `rebuild` each
make the next version, whose parent is the previous one (role "previous") and whose meta
`sources` lists every document's file path and sha256 (lineage to the files). Documents are
read with the data stage's loaders and cleaned and PII-masked the data stage's way (see
`luodi.rag.kb_docs`); changes are incremental: only chunks the previous version lacks are
embedded (see `luodi.rag.kb_build`). `open_kb` loads a version for searching, once per
process, and refuses an index made with another embedder than its kb.json names.

A document is identified by its source name (the file name, or its path under an added
folder): adding a file with the name of one already there replaces it (its unchanged chunks
keep their vectors); adding the same bytes again changes nothing.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

from luodi.data.loaders import FileRejected
from luodi.errors import BadInputError, ConflictError, NotFoundError
from luodi.progress import Progress, no_progress
from luodi.rag import embed
from luodi.rag.chunk import ChunkConfig
from luodi.rag.kb_build import (
    KBNeedsRebuildError,
    build_version,
    config_of,
    embedder_of,
    kb_info,
    newest,
    read_documents,
    read_state,
    resolve_kb,
)
from luodi.rag.kb_docs import SourceFile, doc_id_of, read_document, walk
from luodi.rag.kb_models import (
    DEFAULT_KB_EMBEDDER,
    KIND,
    DocInfo,
    KBChange,
    KBConfig,
    KBDetail,
    KBInfo,
    Skipped,
)
from luodi.rag.kb_search import KnowledgeBase, clear_cache, hit_dict, open_kb, search_kb
from luodi.store import ArtifactInfo, Store, parse_ref

__all__ = [
    "DEFAULT_KB_EMBEDDER",
    "KIND",
    "DocInfo",
    "KBChange",
    "KBConfig",
    "KBDetail",
    "KBInfo",
    "KBNeedsRebuildError",
    "KnowledgeBase",
    "Skipped",
    "SourceFile",
    "add_documents",
    "add_files",
    "clear_cache",
    "create_kb",
    "config_of",
    "delete_documents",
    "hit_dict",
    "list_kbs",
    "open_kb",
    "rebuild",
    "resolve_kb",
    "search_kb",
    "show_kb",
    "tags_of",
]


F = TypeVar("F", bound=Callable[..., Any])
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _one_at_a_time(fn: F) -> F:
    """Run changes to one knowledge base one after another in this process (the gateway
    serves uploads on several threads): each then builds on the newest version. Across
    processes, build_version refuses to register on a version that is no longer the newest."""

    @functools.wraps(fn)
    def wrapper(store: Store, ref: str, *args: Any, **kwargs: Any) -> Any:
        name, _ = parse_ref(ref)
        with _LOCKS_GUARD:
            lock = _LOCKS.setdefault(name, threading.Lock())
        with lock:
            return fn(store, ref, *args, **kwargs)

    return cast(F, wrapper)


# -- changes ------------------------------------------------------------------------------
def create_kb(store: Store, cfg: KBConfig, *, actor: str | None = None) -> KBInfo:
    """Register version 1 of knowledge base `cfg.name`, empty, owned by `cfg.team`.

    The embedder is opened to learn its dimensions (a registered name is kept; a folder is
    recorded by its resolved path). ConflictError when the name is taken.
    """
    try:
        existing = store.resolve(cfg.name, KIND)
    except NotFoundError:
        existing = None
    if existing is not None:
        raise ConflictError(
            f"knowledge base {cfg.name!r} already exists ({existing.ref}, team "
            f"{existing.meta.get('team')!r}); add documents with `luodi kb add {cfg.name} FILES`"
        )
    emb = embed.open_embedder(cfg.embedder)
    cfg = cfg.model_copy(update={"embedder": emb.name})
    info, _, _ = build_version(
        store,
        None,
        None,
        cfg=cfg,
        emb=emb,
        documents=[],
        segments={},
        fresh_docs=set(),
        fresh_index=True,
        change={"op": "create"},
        actor=actor,
    )
    return kb_info(info)


def add_documents(
    store: Store,
    ref: str,
    paths: Sequence[Path],
    tags: Sequence[str] = (),
    progress: Progress = no_progress,
    *,
    actor: str | None = None,
) -> KBChange:
    """Add files (folders are walked) to knowledge base `ref`, making its next version.

    Each file is read by the data stage's loader of its suffix, cleaned and PII-masked (per
    the config), chunked and embedded. A file that cannot be used is reported in `skipped`
    with the reason and the rest is added. A file whose source name is already there
    replaces that document (unchanged chunks keep their vectors); the same bytes again, or
    content another document already has, is skipped. `tags` apply to every added document
    (an updated one keeps its tags when none are given). When nothing is added and nothing
    went wrong, no version is made (`changed` False); when every file failed, BadInputError.
    """
    missing = [Skipped(file=str(p), reason="does not exist") for p in paths if not Path(p).exists()]
    files = list(walk(p for p in paths if Path(p).exists()))
    if not files and not missing:
        raise BadInputError(f"no files found under {', '.join(map(str, paths))}")
    return add_files(store, ref, files, tags, progress, actor=actor, skipped=missing)


@_one_at_a_time
def add_files(
    store: Store,
    ref: str,
    files: Sequence[SourceFile],
    tags: Sequence[str] = (),
    progress: Progress = no_progress,
    *,
    actor: str | None = None,
    skipped: Sequence[Skipped] = (),
) -> KBChange:
    """`add_documents` for files named explicitly (source name and recorded path given),
    e.g. uploads saved to a temporary folder; `skipped` are reported with the rest."""
    prev_info = newest(store, ref)
    prev = read_state(prev_info)
    cfg = prev.config
    version = prev_info.version + 1
    by_source = {d.source: d for d in prev.documents}
    by_sha = {d.sha256: d for d in prev.documents}
    skipped = list(skipped)
    new: dict[str, DocInfo] = {}
    new_segments: dict[str, Any] = {}
    new_sha: dict[str, str] = {}
    progress(task="files", total=len(files))
    for f in files:
        progress(task="files", message=f.source)
        reason = _read_one(f, cfg, by_source, by_sha, new, new_sha)
        if isinstance(reason, str):
            skipped.append(Skipped(file=f.source, reason=reason))
        else:
            doc, segs = reason
            old = by_source.get(f.source)
            doc = doc.model_copy(
                update={"tags": list(tags) or (old.tags if old else []), "added_in": version}
            )
            new[f.source], new_segments[doc.doc_id], new_sha[doc.sha256] = doc, segs, f.source
        progress(task="files", advance=1)
    if not new:
        failed = [s for s in skipped if not s.reason.startswith("unchanged")]
        if failed:
            shown = "; ".join(f"{s.file}: {s.reason}" for s in failed[:5])
            raise BadInputError(f"no document added to {prev_info.ref}: {shown}")
        return KBChange(kb=kb_info(prev_info), changed=False, skipped=skipped)
    documents = [new.pop(d.source, d) for d in prev.documents]
    replaced = [d.source for d in documents if d.doc_id in new_segments]
    documents += list(new.values())
    segments = {**prev.segments, **new_segments}
    added_sources = [d.source for d in documents if d.doc_id in new_segments]
    info, docs, counts = build_version(
        store,
        prev_info,
        prev,
        cfg=cfg,
        emb=embedder_of(prev_info),
        documents=documents,
        segments=segments,
        fresh_docs=set(new_segments),
        fresh_index=False,
        change={
            "op": "add",
            "added": added_sources,
            "replaced": replaced,
            "skipped": len(skipped),
        },
        actor=actor,
        progress=progress,
    )
    return KBChange(
        kb=kb_info(info),
        added=[d for d in docs if d.doc_id in new_segments],
        replaced=replaced,
        skipped=skipped,
        chunks_added=counts.added,
        chunks_removed=counts.removed,
        chunks_embedded=counts.embedded,
        chunks_reused=counts.reused,
    )


def _read_one(
    f: SourceFile,
    cfg: KBConfig,
    by_source: dict[str, DocInfo],
    by_sha: dict[str, DocInfo],
    new: dict[str, DocInfo],
    new_sha: dict[str, str],
) -> str | tuple[DocInfo, list[Any]]:
    """The document read from `f`, or why it is skipped."""
    if f.source in new:
        return "given twice in one change"
    try:
        rd = read_document(f.path, cfg.pii_mask, cfg.pii_allow)
    except FileRejected as exc:
        return exc.message
    old = by_source.get(f.source)
    if old is not None and old.sha256 == rd.sha256:
        return f"unchanged: already in the knowledge base since v{old.added_in}"
    same = by_sha.get(rd.sha256)
    if same is not None and same.source != f.source:
        return f"same content as {same.source!r}, already in the knowledge base"
    if rd.sha256 in new_sha:
        return f"same content as {new_sha[rd.sha256]!r} in this change"
    doc = DocInfo(
        doc_id=doc_id_of(f.source),
        source=f.source,
        path=f.recorded,
        sha256=rd.sha256,
        format=rd.format,
        segments=len(rd.segments),
        chunks=0,
        chars=rd.chars,
        pii_masked=dict(rd.pii),
        problems=rd.problems,
        added_in=0,
    )
    return doc, rd.segments


@_one_at_a_time
def delete_documents(
    store: Store, ref: str, docs: Sequence[str], *, actor: str | None = None
) -> KBChange:
    """Remove documents (by doc id or source name) from knowledge base `ref`, making its next
    version; their chunks leave both indexes and nothing is embedded. Names that match no
    document are reported in `skipped`; NotFoundError when none matches."""
    prev_info = newest(store, ref)
    prev = read_state(prev_info)
    skipped: list[Skipped] = []
    gone: set[str] = set()
    for key in dict.fromkeys(docs):
        hit = [d.doc_id for d in prev.documents if key in (d.doc_id, d.source)]
        if hit:
            gone.update(hit)
        else:
            skipped.append(Skipped(file=key, reason=f"no such document in {prev_info.ref}"))
    if not gone:
        known = ", ".join(d.source for d in prev.documents[:10]) or "none"
        raise NotFoundError(
            f"no document {', '.join(map(repr, docs))} in {prev_info.ref}; its documents: {known}"
        )
    removed = [d.source for d in prev.documents if d.doc_id in gone]
    documents = [d for d in prev.documents if d.doc_id not in gone]
    info, _, counts = build_version(
        store,
        prev_info,
        prev,
        cfg=prev.config,
        emb=embedder_of(prev_info),
        documents=documents,
        segments=prev.segments,
        fresh_docs=set(),
        fresh_index=False,
        change={"op": "delete", "removed": removed},
        actor=actor,
    )
    return KBChange(
        kb=kb_info(info),
        removed=removed,
        skipped=skipped,
        chunks_removed=counts.removed,
        chunks_embedded=counts.embedded,
    )


@_one_at_a_time
def rebuild(
    store: Store,
    ref: str,
    embedder: str | None = None,
    *,
    chunk: ChunkConfig | None = None,
    index: str | None = None,
    progress: Progress = no_progress,
    actor: str | None = None,
) -> KBChange:
    """Re-chunk and re-embed every document of knowledge base `ref` into new indexes, making
    its next version: with another embedder, chunking or index kind when given, otherwise
    with the config the version was built with (so it also repairs a damaged index).
    Needs the version's documents.json and segments.parquet."""
    prev_info = newest(store, ref)
    prev = read_state(prev_info)
    update: dict[str, Any] = {}
    if chunk is not None:
        update["chunk"] = chunk
    if index is not None:
        update["index"] = index
    cfg = KBConfig.model_validate({**prev.config.model_dump(), **update})
    emb = embed.open_embedder(embedder or prev.embedder)
    cfg = cfg.model_copy(update={"embedder": emb.name})
    info, _, counts = build_version(
        store,
        prev_info,
        prev,
        cfg=cfg,
        emb=emb,
        documents=prev.documents,
        segments=prev.segments,
        fresh_docs={d.doc_id for d in prev.documents},
        fresh_index=True,
        change={"op": "rebuild", "embedder": emb.name, "previous_embedder": prev.embedder},
        actor=actor,
        progress=progress,
    )
    return KBChange(
        kb=kb_info(info),
        chunks_added=counts.added,
        chunks_removed=counts.removed,
        chunks_embedded=counts.embedded,
    )


# -- reading ------------------------------------------------------------------------------
def list_kbs(store: Store, team: str | None = None) -> list[KBInfo]:
    """The newest version of every knowledge base (of `team` only, when given), by name."""
    newest: dict[str, ArtifactInfo] = {}
    for a in store.list(KIND):
        newest[a.name] = a  # oldest first: the last one wins
    infos = [kb_info(a) for a in newest.values()]
    return sorted((i for i in infos if team is None or i.team == team), key=lambda i: i.name)


def show_kb(store: Store, ref: str) -> KBDetail:
    """Version `ref` with its config and documents, and every version of its knowledge base."""
    a = resolve_kb(store, ref)
    return KBDetail(
        kb=kb_info(a),
        config=config_of(a),
        documents=read_documents(a),
        versions=[kb_info(v) for v in store.list(KIND, a.name)],
    )


def tags_of(values: Iterable[str]) -> list[str]:
    """Tags from repeated and comma-separated values, stripped, without duplicates."""
    out: dict[str, None] = {}
    for v in values:
        for t in str(v).split(","):
            if t.strip():
                out[t.strip()] = None
    return list(out)
