"""Knowledge-base versions on disk: reading one back, and building the next one.

A version's folder holds
- `kb.json`: the config and the embedder (name and dimensions) its vectors were made with;
- `documents.json`: the documents (source, file path + sha256, tags, counts);
- `segments.parquet`: each document's cleaned text segments (what `rebuild` re-chunks);
- `chunks.parquet`: the chunks (id, document, source, text, section, page, offsets);
- `vectors/` and `lexical/`: the vector and BM25 indexes (absent while there are no chunks).

Building is incremental: the next version starts from a copy of the previous indexes, removes
the chunks that are gone and embeds only chunks whose id the previous version did not have
(a chunk id hashes the document and the text, so an unchanged chunk keeps its vector). Every
thing is written into the store's draft folder and registered at once, or not at all.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from luodi.data.loaders import Segment
from luodi.errors import BadInputError, ConflictError, NotFoundError
from luodi.progress import Progress, no_progress
from luodi.rag import embed
from luodi.rag.chunk import Chunk, chunk_segments
from luodi.rag.embed import Embedder
from luodi.rag.index import (
    load_lexical_index,
    load_vector_index,
    new_lexical_index,
    new_vector_index,
)
from luodi.rag.kb_models import FORMAT, KIND, DocInfo, KBConfig, KBInfo
from luodi.store import ArtifactInfo, Store, parse_ref

KB_JSON = "kb.json"
DOCUMENTS = "documents.json"
SEGMENTS = "segments.parquet"
CHUNKS = "chunks.parquet"
VECTORS = "vectors"
LEXICAL = "lexical"
EMBED_BATCH = 256

_SEGMENT_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("text", pa.string()),
        ("location", pa.string()),
        ("meta", pa.string()),
    ]
)
_CHUNK_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("doc_id", pa.string()),
        ("source", pa.string()),
        ("text", pa.string()),
        ("section", pa.string()),
        ("page", pa.int32()),
        ("start", pa.int64()),
        ("end", pa.int64()),
    ]
)


class KBNeedsRebuildError(ConflictError):
    """A knowledge-base version's files cannot be used as they are; `luodi kb rebuild` fixes
    what it can (it needs documents.json and segments.parquet)."""


@dataclass
class State:
    """A knowledge-base version as the builder needs it."""

    config: KBConfig
    embedder: str
    dim: int
    documents: list[DocInfo] = field(default_factory=list)
    segments: dict[str, list[Segment]] = field(default_factory=dict)
    chunks: list[Chunk] = field(default_factory=list)
    folder: Path | None = None
    """The version's folder (None before the first version)."""


@dataclass
class Counts:
    """Chunk counts of a change."""

    added: int = 0
    removed: int = 0
    embedded: int = 0
    reused: int = 0


def resolve_kb(store: Store, ref: str) -> ArtifactInfo:
    """The version `ref` (NAME = newest, or NAME:vN); NotFoundError naming what exists."""
    try:
        return store.resolve(ref, KIND)
    except NotFoundError as exc:
        raise NotFoundError(exc.message.replace(KIND, "knowledge base")) from None


def newest(store: Store, ref: str) -> ArtifactInfo:
    """The newest version of `ref`'s knowledge base: changes apply to it only."""
    name, version = parse_ref(ref)
    latest = resolve_kb(store, name)
    if version is not None and version != latest.version:
        resolve_kb(store, ref)  # NotFoundError for a version that does not exist
        raise ConflictError(
            f"changes apply to the newest version of {name!r}: {latest.ref}, not {name}:v{version}"
        )
    return latest


class LazyEmbedder:
    """The embedder of a knowledge base, opened only when a text must be embedded or counted
    (a deletion embeds nothing), and checked to still make vectors of the stored size."""

    def __init__(self, name: str, dim: int, kb: str) -> None:
        self.name, self.dim, self._kb = name, dim, kb
        self._real: Embedder | None = None

    def get(self) -> Embedder:
        """The embedder itself (opened now); KBNeedsRebuildError when its size changed."""
        if self._real is None:
            real = embed.open_embedder(self.name)
            if real.dim != self.dim:
                raise KBNeedsRebuildError(
                    f"embedder {self.name!r} now makes {real.dim}-dimensional vectors but "
                    f"knowledge base {self._kb} holds {self.dim}-dimensional ones; run "
                    f"`luodi kb rebuild {self._kb.split(':')[0]}` to re-embed it"
                )
            self._real = real
        return self._real

    def embed_queries(self, texts: Sequence[str]) -> Any:
        """See Embedder."""
        return self.get().embed_queries(texts)

    def embed_passages(self, texts: Sequence[str]) -> Any:
        """See Embedder."""
        return self.get().embed_passages(texts)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """See Embedder."""
        return self.get().count_tokens(texts)


def embedder_of(a: ArtifactInfo) -> LazyEmbedder:
    """The (lazily opened) embedder version `a` was built with."""
    return LazyEmbedder(a.meta["embedder"], int(a.meta["dim"]), a.ref)


def kb_info(a: ArtifactInfo) -> KBInfo:
    """The KBInfo of a registered version (from its database row)."""
    m = a.meta
    parent = next((p.ref for p in a.parents if p.role == "previous"), None)
    return KBInfo(
        ref=a.ref,
        name=a.name,
        version=a.version,
        team=m.get("team", "default"),
        embedder=m.get("embedder", ""),
        dim=int(m.get("dim", 0)),
        index=m.get("index", "faiss"),
        documents=int(m.get("documents", 0)),
        chunks=int(m.get("chunks", 0)),
        description=m.get("description"),
        parent=parent,
        content_hash=a.content_hash,
        created_at=a.created_at,
        created_by=m.get("by") or a.created_by,
        change=m.get("change", {}),
    )


def config_of(a: ArtifactInfo) -> KBConfig:
    """The config a version was built with, from its database row (not from its kb.json,
    which a user may have edited)."""
    return KBConfig.model_validate(a.meta["config"])


def _corrupt(a: ArtifactInfo, what: str, exc: BaseException | None = None) -> KBNeedsRebuildError:
    why = f": {type(exc).__name__}: {exc}" if exc else ""
    return KBNeedsRebuildError(
        f"knowledge base {a.ref}: {what}{why}; run `luodi kb rebuild {a.name}` to rebuild it"
    )


def read_kb_json(a: ArtifactInfo) -> dict[str, Any]:
    """The kb.json of version `a`; KBNeedsRebuildError when missing or malformed."""
    try:
        data = json.loads((a.path / KB_JSON).read_text(encoding="utf-8"))
        stamp = data["embedder"]
        if not isinstance(stamp["name"], str):
            raise TypeError("the embedder name is not a string")
        stamp["dim"] = int(stamp["dim"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _corrupt(a, f"{KB_JSON} is missing or malformed", exc) from None
    return data


def read_documents(a: ArtifactInfo) -> list[DocInfo]:
    """The documents of version `a`."""
    try:
        raw = json.loads((a.path / DOCUMENTS).read_text(encoding="utf-8"))
        return [DocInfo.model_validate(d) for d in raw]
    except (OSError, ValueError) as exc:
        raise _corrupt(a, f"{DOCUMENTS} is missing or malformed", exc) from None


def read_chunks(a: ArtifactInfo) -> list[Chunk]:
    """The chunks of version `a`, in document order."""
    path = a.path / CHUNKS
    if not path.exists():
        return []
    try:
        rows = pq.read_table(path).to_pylist()
    except (OSError, pa.ArrowException) as exc:
        raise _corrupt(a, f"{CHUNKS} is unreadable", exc) from None
    return [Chunk(**r) for r in rows]


def read_segments(a: ArtifactInfo) -> dict[str, list[Segment]]:
    """The cleaned segments of each document of version `a`."""
    path = a.path / SEGMENTS
    out: dict[str, list[Segment]] = {}
    if not path.exists():
        return out
    try:
        rows = pq.read_table(path).to_pylist()
    except (OSError, pa.ArrowException) as exc:
        raise _corrupt(a, f"{SEGMENTS} is unreadable", exc) from None
    for r in rows:
        out.setdefault(r["doc_id"], []).append(
            Segment(r["text"], r["location"], json.loads(r["meta"] or "{}"))
        )
    return out


def read_state(a: ArtifactInfo) -> State:
    """Everything the next version builds on: config, documents, segments and chunks."""
    return State(
        config=config_of(a),
        embedder=a.meta["embedder"],
        dim=int(a.meta["dim"]),
        documents=read_documents(a),
        segments=read_segments(a),
        chunks=read_chunks(a),
        folder=a.path,
    )


def _write(
    folder: Path,
    cfg: KBConfig,
    emb: Embedder,
    docs: list[DocInfo],
    segments: dict[str, list[Segment]],
    chunks: list[Chunk],
) -> None:
    kb = {
        "format": FORMAT,
        "config": cfg.model_dump(mode="json"),
        "embedder": {"name": emb.name, "dim": emb.dim},
    }
    (folder / KB_JSON).write_text(json.dumps(kb, ensure_ascii=False, indent=2), encoding="utf-8")
    (folder / DOCUMENTS).write_text(
        json.dumps([d.model_dump(mode="json") for d in docs], ensure_ascii=False, indent=2),
        encoding="utf-8",
    )
    seg_rows = [
        {
            "doc_id": d.doc_id,
            "text": s.text,
            "location": s.location,
            "meta": json.dumps(s.meta, ensure_ascii=False, default=str),
        }
        for d in docs
        for s in segments[d.doc_id]
    ]
    pq.write_table(
        pa.Table.from_pylist(seg_rows, schema=_SEGMENT_SCHEMA),
        folder / SEGMENTS,
        compression="zstd",
    )
    chunk_rows = [
        {
            "id": c.id,
            "doc_id": c.doc_id,
            "source": c.source,
            "text": c.text,
            "section": c.section,
            "page": c.page,
            "start": c.start,
            "end": c.end,
        }
        for c in chunks
    ]
    pq.write_table(
        pa.Table.from_pylist(chunk_rows, schema=_CHUNK_SCHEMA), folder / CHUNKS, compression="zstd"
    )


def counter(emb: Embedder, cfg: KBConfig) -> Callable[[str], int] | None:
    """How chunk sizes are counted: the embedder's tokens for unit "tokens", else None."""
    if cfg.chunk.unit != "tokens":
        return None
    return lambda text: emb.count_tokens([text])[0]


def _embed(
    emb: Embedder, chunks: list[Chunk], progress: Progress
) -> Iterable[tuple[list[str], Any]]:
    progress(task="embed", total=len(chunks))
    for i in range(0, len(chunks), EMBED_BATCH):
        part = chunks[i : i + EMBED_BATCH]
        vectors = emb.embed_passages([c.text for c in part])
        progress(task="embed", advance=len(part))
        yield [c.id for c in part], vectors


def _build_indexes(
    draft: Path,
    prev: State | None,
    fresh: bool,
    cfg: KBConfig,
    emb: Embedder,
    remove: list[str],
    add: list[Chunk],
    progress: Progress,
) -> None:
    """Write vectors/ and lexical/ into `draft`: the previous version's indexes minus
    `remove` plus `add`, or (`fresh`) new indexes of `add`."""
    if not fresh:
        assert prev is not None and prev.folder is not None
        # Work on copies: a registered folder is never modified (milvus-lite writes its file).
        work = draft / ".work"
        shutil.copytree(prev.folder / VECTORS, work / VECTORS)
        shutil.copytree(prev.folder / LEXICAL, work / LEXICAL)
        try:
            vectors = load_vector_index(work / VECTORS, expect_dim=emb.dim)
            lexical = load_lexical_index(work / LEXICAL)
        except BadInputError as exc:
            raise KBNeedsRebuildError(
                f"the indexes of {prev.config.name} cannot be loaded ({exc.message}); run "
                f"`luodi kb rebuild {prev.config.name}`"
            ) from None
        if remove:
            vectors.remove(remove)
            lexical.remove(remove)
    else:
        work = None
        vectors = new_vector_index(cfg.index, emb.dim)
        lexical = new_lexical_index()
    by_id = {c.id: c for c in add}
    for ids, vecs in _embed(emb, add, progress):
        vectors.add(ids, vecs)
        lexical.add(ids, [by_id[i].text for i in ids])
    vectors.save(draft / VECTORS)
    lexical.save(draft / LEXICAL)
    if work is not None:
        shutil.rmtree(work, ignore_errors=True)


def build_version(
    store: Store,
    prev_info: ArtifactInfo | None,
    prev: State | None,
    *,
    cfg: KBConfig,
    emb: Embedder,
    documents: list[DocInfo],
    segments: dict[str, list[Segment]],
    fresh_docs: set[str],
    fresh_index: bool,
    change: dict[str, Any],
    actor: str | None,
    progress: Progress = no_progress,
) -> tuple[ArtifactInfo, list[DocInfo], Counts]:
    """Register the next version holding `documents` (final order) and return it with the
    documents (chunk counts filled in) and the chunk counts of the change.

    Documents in `fresh_docs` are chunked from `segments`; the others keep the chunks they
    had in `prev`. With `fresh_index` (or no previous index) the indexes are built anew and
    every chunk is embedded; otherwise only chunks the previous version lacks are embedded.
    ConflictError when another change registered a version meanwhile.
    """
    lost = [d.source for d in documents if d.doc_id not in segments]
    if lost:
        raise KBNeedsRebuildError(
            f"{cfg.name}: the stored text of {', '.join(lost[:5])} is missing (segments.parquet "
            "was altered); delete those documents and add their files again"
        )
    count = counter(emb, cfg)
    kept_chunks: dict[str, list[Chunk]] = {}
    for c in prev.chunks if prev else []:
        kept_chunks.setdefault(c.doc_id, []).append(c)
    final: list[Chunk] = []
    seen: set[str] = set()
    out_docs: list[DocInfo] = []
    for d in documents:
        if d.doc_id in fresh_docs:
            mine = chunk_segments(d.doc_id, d.source, segments[d.doc_id], cfg.chunk, count)
        else:
            mine = kept_chunks.get(d.doc_id, [])
        # the same text twice in one document is one chunk id: keep its first place
        mine = [c for c in mine if not (c.id in seen or seen.add(c.id))]
        final.extend(mine)
        out_docs.append(d.model_copy(update={"chunks": len(mine)}))
    prev_ids = {c.id for c in prev.chunks} if prev else set()
    final_ids = {c.id for c in final}
    # A previous version without an index folder (it had no chunks) starts from scratch.
    has_prev_index = bool(prev and prev.folder and (prev.folder / VECTORS).is_dir())
    rebuild_all = fresh_index or not has_prev_index
    add = final if rebuild_all else [c for c in final if c.id not in prev_ids]
    remove = [] if rebuild_all else sorted(prev_ids - final_ids)
    counts = Counts(
        added=len(final_ids - prev_ids),
        removed=len(prev_ids - final_ids),
        embedded=len(add),
        reused=sum(1 for c in final if c.doc_id in fresh_docs and c.id in prev_ids)
        if not rebuild_all
        else 0,
    )
    sources = [
        {
            "path": d.path,
            "sha256": d.sha256,
            "source": d.source,
            "doc_id": d.doc_id,
            "format": d.format,
            "chunks": d.chunks,
        }
        for d in out_docs
    ]
    meta = {
        "team": cfg.team,
        "embedder": emb.name,
        "dim": emb.dim,
        "index": cfg.index,
        "documents": len(out_docs),
        "chunks": len(final),
        "description": cfg.description,
        "config": cfg.model_dump(mode="json"),
        "sources": sources,
        "change": {**change, "chunks_embedded": counts.embedded},
        "by": actor,
    }
    parents = [(prev_info, "previous")] if prev_info is not None else []
    with store.create(KIND, cfg.name, parents=parents, meta=meta) as draft:
        if final:
            _build_indexes(draft.path, prev, rebuild_all, cfg, emb, remove, add, progress)
        _write(draft.path, cfg, emb, out_docs, segments, final)
        _check_latest(store, cfg.name, prev_info)
    assert draft.artifact is not None
    return draft.artifact, out_docs, counts


def _check_latest(store: Store, name: str, prev_info: ArtifactInfo | None) -> None:
    """Refuse to register on top of a version that is no longer the newest (two changes at
    once would otherwise lose one of them)."""
    try:
        latest = store.resolve(name, KIND).version
    except NotFoundError:
        latest = 0
    expected = prev_info.version if prev_info else 0
    if latest != expected:
        raise ConflictError(
            f"knowledge base {name!r} changed while this change was built (now v{latest}, "
            f"built on v{expected}); run it again"
        )
