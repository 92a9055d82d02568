"""`luodi kb …`: knowledge bases (create, add, delete, list, show, rebuild, search, lineage).

Thin: parse the options, call luodi.rag.kb, render the result (a table, or JSON with --json;
`search --json` prints one JSON object per line).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from luodi.cli.render import emit_json, err, lineage_tree, out, progress_bar, table, validated
from luodi.cli.state import STATE
from luodi.errors import BadInputError
from luodi.rag.chunk import ChunkConfig
from luodi.rag.kb_models import DEFAULT_KB_EMBEDDER

app = typer.Typer(no_args_is_help=True)

JSON = typer.Option(False, "--json", help="Print the result as JSON.")
KB = typer.Argument(..., help="Knowledge base: NAME (newest version) or NAME:vN.")


def _info_row(i: Any) -> list[Any]:
    return [
        i.ref,
        i.team,
        i.documents,
        i.chunks,
        i.embedder,
        i.index,
        f"{i.created_at:%Y-%m-%d %H:%M}",
    ]


INFO_COLUMNS = ["kb", "team", "documents", "chunks", "embedder", "index", "created"]


def _show_change(ch: Any, as_json: bool) -> None:
    if as_json:
        emit_json(ch)
        return
    if not ch.changed:
        out.print(f"{ch.kb.ref}: nothing changed (no new version)")
    else:
        out.print(table(None, INFO_COLUMNS, [_info_row(ch.kb)]))
        out.print(
            f"chunks: +{ch.chunks_added} -{ch.chunks_removed}, embedded {ch.chunks_embedded}"
            + (f", vectors kept for {ch.chunks_reused}" if ch.chunks_reused else "")
        )
    if ch.added:
        rows = [
            [d.source, d.format, d.segments, d.chunks, _pii(d.pii_masked), d.doc_id]
            for d in ch.added
        ]
        out.print(
            table("added", ["document", "format", "segments", "chunks", "pii masked", "id"], rows)
        )
    if ch.replaced:
        out.print(f"replaced: {', '.join(ch.replaced)}")
    if ch.removed:
        out.print(f"removed: {', '.join(ch.removed)}")
    if ch.skipped:
        out.print(table("skipped", ["file", "reason"], [[s.file, s.reason] for s in ch.skipped]))


def _pii(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"


@app.command()
def create(
    name: str = typer.Argument(..., help="Knowledge-base name."),
    team: str = typer.Option("default", "--team", help="Owning team (its API keys see it)."),
    embedder: str = typer.Option(
        DEFAULT_KB_EMBEDDER,
        "--embedder",
        help="e5 (Chinese + English), minilm (English), a sentence-transformers folder, or "
        "openai:http://host:port/v1#MODEL.",
    ),
    chunk_size: int = typer.Option(
        ChunkConfig().size, "--chunk-size", help="Maximum chunk length."
    ),
    overlap: int = typer.Option(
        ChunkConfig().overlap, "--overlap", help="Overlap between chunks of a section."
    ),
    unit: str = typer.Option("chars", "--unit", help="chars or tokens (the embedder's)."),
    index: str = typer.Option("faiss", "--index", help="faiss or milvus (milvus-lite)."),
    pii_mask: bool = typer.Option(
        True, "--pii-mask/--no-pii-mask", help="Mask PII in documents (default on)."
    ),
    pii_allow: list[str] = typer.Option(
        [], "--pii-allow", help="A string never masked, e.g. the public hotline (repeatable)."
    ),
    description: str | None = typer.Option(None, "--description", help="What it holds."),
    as_json: bool = JSON,
) -> None:
    """Create an empty knowledge base (version 1)."""
    from luodi.rag.kb import KBConfig, create_kb

    chunk = validated(ChunkConfig, size=chunk_size, overlap=overlap, unit=unit)
    cfg = validated(
        KBConfig,
        name=name,
        team=team,
        embedder=embedder,
        chunk=chunk,
        index=index,
        pii_mask=pii_mask,
        pii_allow=pii_allow,
        description=description,
    )
    info = create_kb(STATE.store(), cfg)
    if as_json:
        emit_json(info)
        return
    out.print(table(None, INFO_COLUMNS, [_info_row(info)]))


@app.command()
def add(
    kb: str = KB,
    paths: list[Path] = typer.Argument(..., help="Files and folders (walked recursively)."),
    tag: list[str] = typer.Option([], "--tag", help="Tag the added documents (repeatable)."),
    as_json: bool = JSON,
) -> None:
    """Add documents (any format the data stage reads); only new chunks are embedded."""
    from luodi.rag.kb import add_documents, tags_of

    with progress_bar(not as_json) as p:
        ch = add_documents(STATE.store(), kb, paths, tags_of(tag), p)
    _show_change(ch, as_json)


@app.command()
def delete(
    kb: str = KB,
    docs: list[str] = typer.Argument(..., help="Documents to remove: source names or ids."),
    as_json: bool = JSON,
) -> None:
    """Remove documents; their chunks leave the indexes (nothing is re-embedded)."""
    from luodi.rag.kb import delete_documents

    _show_change(delete_documents(STATE.store(), kb, docs), as_json)


@app.command("list")
def list_(
    team: str | None = typer.Option(None, "--team", help="Only this team's."),
    as_json: bool = JSON,
) -> None:
    """List knowledge bases (newest version of each)."""
    from luodi.rag.kb import list_kbs

    infos = list_kbs(STATE.store(), team)
    if as_json:
        emit_json(infos)
        return
    out.print(table(None, INFO_COLUMNS, [_info_row(i) for i in infos]))


@app.command()
def show(kb: str = KB, as_json: bool = JSON) -> None:
    """Show a version: config, documents and the history of the knowledge base."""
    from luodi.rag.kb import show_kb

    d = show_kb(STATE.store(), kb)
    if as_json:
        emit_json(d)
        return
    c = d.config
    out.print(table(None, INFO_COLUMNS, [_info_row(d.kb)]))
    out.print(
        f"chunks: {c.chunk.size} {c.chunk.unit}, overlap {c.chunk.overlap} · pii mask: "
        f"{'on' if c.pii_mask else 'off'}" + (f" · {c.description}" if c.description else "")
    )
    rows = [
        [x.source, x.format, x.chunks, ", ".join(x.tags), f"v{x.added_in}", x.sha256[:12], x.doc_id]
        for x in d.documents
    ]
    out.print(
        table("documents", ["document", "format", "chunks", "tags", "since", "sha256", "id"], rows)
    )
    hist = [
        [
            v.ref,
            v.change.get("op", ""),
            _summary(v.change),
            v.documents,
            v.chunks,
            v.created_by,
            f"{v.created_at:%Y-%m-%d %H:%M}",
        ]
        for v in d.versions
    ]
    out.print(
        table("versions", ["version", "op", "change", "documents", "chunks", "by", "created"], hist)
    )


def _summary(change: dict[str, Any]) -> str:
    parts = []
    if change.get("added"):
        parts.append(
            "+" + ", ".join(change["added"][:3]) + ("…" if len(change["added"]) > 3 else "")
        )
    if change.get("removed"):
        parts.append(
            "-" + ", ".join(change["removed"][:3]) + ("…" if len(change["removed"]) > 3 else "")
        )
    if change.get("op") == "rebuild":
        parts.append(f"embedder {change.get('embedder')}")
    if "chunks_embedded" in change:
        parts.append(f"embedded {change['chunks_embedded']}")
    return "; ".join(parts)


@app.command("rebuild")
def rebuild_(
    kb: str = KB,
    embedder: str | None = typer.Option(
        None, "--embedder", help="Re-embed with this embedder (default: the one it was built with)."
    ),
    chunk_size: int | None = typer.Option(None, "--chunk-size", help="New maximum chunk length."),
    overlap: int | None = typer.Option(None, "--overlap", help="New overlap."),
    unit: str | None = typer.Option(None, "--unit", help="New unit: chars or tokens."),
    index: str | None = typer.Option(None, "--index", help="New vector index: faiss or milvus."),
    as_json: bool = JSON,
) -> None:
    """Re-chunk and re-embed every document into new indexes (a new version)."""
    from luodi.rag.kb import config_of, rebuild, resolve_kb

    store = STATE.store()
    chunk = None
    if chunk_size is not None or overlap is not None or unit is not None:
        old = config_of(resolve_kb(store, kb)).chunk
        chunk = validated(
            ChunkConfig,
            size=chunk_size if chunk_size is not None else old.size,
            overlap=overlap if overlap is not None else old.overlap,
            unit=unit or old.unit,
        )
    if index is not None and index not in ("faiss", "milvus"):
        raise BadInputError(f"--index must be faiss or milvus, got {index!r}")
    with progress_bar(not as_json) as p:
        ch = rebuild(store, kb, embedder, chunk=chunk, index=index, progress=p)
    _show_change(ch, as_json)


@app.command()
def search(
    kb: str = KB,
    query: str = typer.Argument(..., help="What to look for."),
    top_k: int = typer.Option(5, "--top-k", "-k", help="How many chunks to show."),
    mode: str = typer.Option("hybrid", "--mode", help="dense, lexical or hybrid (RRF)."),
    min_score: float | None = typer.Option(
        None, "--min-score", help="Relevance threshold on the dense cosine (see retrieve)."
    ),
    doc: list[str] = typer.Option([], "--doc", help="Only these documents (repeatable)."),
    tag: list[str] = typer.Option([], "--tag", help="Only documents with these tags."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per chunk and line."),
) -> None:
    """Show the chunks retrieved for a query, with source and scores (no model is called)."""
    from luodi.rag.kb import hit_dict, search_kb, tags_of
    from luodi.rag.retrieve import RetrieveConfig

    fields: dict[str, Any] = {"mode": mode, "top_k": top_k}
    if min_score is not None:
        fields["min_score"] = min_score
    if doc:
        fields["documents"] = doc
    if tag:
        fields["tags"] = tags_of(tag)
    cfg = validated(RetrieveConfig, **fields)
    info, hits = search_kb(STATE.store(), kb, query, cfg)
    if as_json:
        for h in hits:
            sys.stdout.write(json.dumps(hit_dict(info.ref, h), ensure_ascii=False) + "\n")
        return
    if not hits:
        err.print(f"nothing in {info.ref} passed the relevance threshold")
        return
    for h in hits:
        c = h.chunk
        where = " · ".join(
            x for x in (c.source, c.section, f"p.{c.page}" if c.page is not None else None) if x
        )
        scores = f"score {h.score:.4f}" + "".join(
            f" {name} {v:.4f}"
            for name, v in (("dense", h.dense), ("lexical", h.lexical))
            if v is not None
        )
        out.print(f"[bold]{h.rank}. {where}[/bold]  [dim]{scores} · {c.id}[/dim]")
        out.print(c.text, markup=False, highlight=False)
        out.print()


@app.command()
def lineage(kb: str = KB, as_json: bool = JSON) -> None:
    """Show a version's previous versions and the source files (sha256) behind each."""
    from luodi.rag.kb import KIND

    node = STATE.store().lineage(kb, KIND)
    if as_json:
        emit_json(node)
        return
    out.print(lineage_tree(node))
