"""`luodi models …`: base models and the model registry (versions, stages, lineage, merge)."""

from __future__ import annotations

import typer

from luodi.cli.render import emit_json, lineage_tree, out, table
from luodi.cli.state import STATE

app = typer.Typer(no_args_is_help=True)
base_app = typer.Typer(no_args_is_help=True)
app.add_typer(base_app, name="base", help="Register and list base models.")
composite_app = typer.Typer(no_args_is_help=True)
app.add_typer(
    composite_app,
    name="composite",
    help="Composite models (模型合作): route or cascade between a domain and a general model.",
)

JSON = typer.Option(False, "--json", help="Print the result as JSON.")


@base_app.command("add")
def base_add(
    source: str = typer.Argument(..., help="HF model folder, .gguf file/folder, or tiny:<preset>."),
    name: str | None = typer.Option(None, "--name", help="Name (default from the path)."),
    license: str | None = typer.Option(None, "--license", help="Licence note, e.g. Apache-2.0."),
    as_json: bool = JSON,
) -> None:
    """Register a base model (its path and sha256; nothing is copied)."""
    from luodi.models.base import add_base

    info = add_base(STATE.store(), source, name=name, license=license)
    if as_json:
        emit_json(info)
        return
    m = info.meta
    out.print(f"{info.ref}  {m.get('format')}  {m.get('source')}  sha256:{info.content_hash[:12]}")


@base_app.command("list")
def base_list(as_json: bool = JSON) -> None:
    """List registered base models."""
    from luodi.models.base import KIND

    infos = STATE.store().list(KIND)
    if as_json:
        emit_json(infos)
        return
    rows = [
        [i.ref, i.meta.get("format"), i.meta.get("source"), i.meta.get("license") or "-"]
        for i in infos
    ]
    out.print(table(None, ["base", "format", "source", "license"], rows))


@app.command("list")
def list_(
    name: str | None = typer.Argument(None, help="Only versions of this model."),
    as_json: bool = JSON,
) -> None:
    """List model versions with their stage."""
    from luodi.registry.stages import versions

    vs = versions(STATE.store(), name)
    if as_json:
        emit_json([{"model": v.ref, "stage": v.stage, **_summary(v.artifact.meta)} for v in vs])
        return
    rows = [
        [
            v.ref,
            v.stage,
            *_summary(v.artifact.meta).values(),
            f"{v.artifact.created_at:%Y-%m-%d %H:%M}",
        ]
        for v in vs
    ]
    out.print(table(None, ["model", "stage", "trained", "method", "base", "created"], rows))


def _summary(meta: dict) -> dict[str, str]:
    base = meta.get("base") or {}
    return {
        "trained": str(meta.get("stage", "-")),
        "method": str(meta.get("method", "-")),
        "base": str(base.get("ref", "-") if isinstance(base, dict) else base),
    }


@app.command()
def show(
    ref: str = typer.Argument(..., help="NAME, NAME:vN or NAME@stage."), as_json: bool = JSON
) -> None:
    """Show a model version: stage, base, datasets, config and final metrics."""
    from luodi.registry.stages import resolve_model, stage_of

    store = STATE.store()
    info = resolve_model(store, ref)
    stage = stage_of(store, info.ref)
    if as_json:
        emit_json({"model": info.ref, "stage": stage, "artifact": info.model_dump(mode="json")})
        return
    rows = [["stage", stage], *[[k, v] for k, v in _summary(info.meta).items()]]
    rows += [[f"parent ({p.role})", f"{p.kind} {p.ref}"] for p in info.parents]
    rows += [[f"metric {k}", v] for k, v in (info.meta.get("metrics") or {}).items()]
    rows += [["path", str(info.path)], ["content hash", info.content_hash]]
    out.print(table(info.ref, ["field", "value"], rows))


@app.command()
def lineage(
    ref: str = typer.Argument(..., help="NAME, NAME:vN or NAME@stage."), as_json: bool = JSON
) -> None:
    """The chain from a model version back to its base, datasets and source files."""
    from luodi.registry.stages import resolve_model

    store = STATE.store()
    info = resolve_model(store, ref)
    node = store.lineage(info.ref, info.kind)
    if as_json:
        emit_json(node)
        return

    out.print(lineage_tree(node))


def _change(res, as_json: bool) -> None:  # noqa: ANN001
    if as_json:
        emit_json(res)
        return
    if not res.changed:
        out.print(f"{res.ref} is already {res.to_stage}; nothing changed")
        return
    out.print(f"{res.ref}: {res.from_stage} → {res.to_stage}")
    if res.displaced:
        out.print(f"{res.displaced}: production → archived")


@app.command()
def promote(
    ref: str = typer.Argument(..., help="NAME:vN to move."),
    to: str = typer.Option("production", "--to", help="candidate, staging, production, archived."),
    reason: str | None = typer.Option(None, "--reason"),
    as_json: bool = JSON,
) -> None:
    """Move a version to a stage (production displaces the current production version)."""
    from luodi.registry.stages import set_stage

    _change(set_stage(STATE.store(), ref, to, reason), as_json)


@app.command()
def archive(
    ref: str = typer.Argument(..., help="NAME:vN to archive."),
    reason: str | None = typer.Option(None, "--reason"),
    as_json: bool = JSON,
) -> None:
    """Archive a version."""
    from luodi.registry.stages import set_stage

    _change(set_stage(STATE.store(), ref, "archived", reason), as_json)


@app.command()
def rollback(
    name: str = typer.Argument(..., help="Model name."),
    reason: str | None = typer.Option(None, "--reason"),
    as_json: bool = JSON,
) -> None:
    """Restore the previous production version; the current one is archived."""
    from luodi.registry.stages import rollback as do_rollback

    _change(do_rollback(STATE.store(), name, reason), as_json)


@app.command()
def history(name: str = typer.Argument(..., help="Model name."), as_json: bool = JSON) -> None:
    """Every stage change of a model's versions, oldest first."""
    from luodi.registry.stages import history as stage_history

    events = stage_history(STATE.store(), name)
    if as_json:
        emit_json(events)
        return
    rows = [
        [
            f"{e.at:%Y-%m-%d %H:%M:%S}",
            e.ref,
            f"{e.from_stage} → {e.to_stage}",
            e.action,
            e.by,
            e.reason or "",
        ]
        for e in events
    ]
    out.print(table(name, ["when", "version", "change", "action", "by", "reason"], rows))


@app.command()
def merge(
    ref: str = typer.Argument(..., help="Adapter version to merge, NAME:vN."),
    name: str | None = typer.Option(None, "--name", help="Name of the merged model."),
    as_json: bool = JSON,
) -> None:
    """Merge an adapter into its base; registers a full version with the adapter as parent."""
    from luodi.train.versions import merge as do_merge

    info = do_merge(STATE.store(), ref, name)
    if as_json:
        emit_json(info)
        return
    out.print(f"merged {ref} into {info.ref} ({info.path})")


@composite_app.command("create")
def composite_create(
    name: str = typer.Argument(..., help="Composite name (used like a model name)."),
    mode: str = typer.Option(..., "--mode", help="route or cascade."),
    domain: str = typer.Option(..., "--domain", help="Domain model (NAME[:vN|@stage], base)."),
    general: str = typer.Option(..., "--general", help="General model (same forms)."),
    data: str | None = typer.Option(None, "--data", help="route: domain dataset to train on."),
    general_data: str | None = typer.Option(
        None, "--general-data", help="route: out-of-domain dataset (default: built-in prompts)."
    ),
    classifier: str = typer.Option("embedding", "--classifier", help="embedding or keyword."),
    embedder: str = typer.Option("e5", "--embedder", help="route/embedding: the embedder."),
    threshold: float | None = typer.Option(
        None, "--threshold", help="route: fixed router threshold (default: chosen held-out)."
    ),
    holdout: float = typer.Option(0.25, "--holdout", help="Share held out per side."),
    seed: int = typer.Option(0, "--seed", help="Seed of the held-out split."),
    kb: str | None = typer.Option(None, "--kb", help="cascade: knowledge base to check."),
    min_score: float | None = typer.Option(
        None, "--min-score", help="cascade: dense score the question's best chunk must reach."
    ),
    marker: list[str] | None = typer.Option(
        None, "--marker", help="cascade: a refusal/uncertainty phrase (repeat; default list)."
    ),
    as_json: bool = JSON,
) -> None:
    """Register a composite: train its router (route) or set its fallback checks (cascade)."""
    from luodi.cli.render import validated
    from luodi.collab.cascade import CascadeSettings
    from luodi.collab.composite import CompositeConfig, create_composite

    cascade = validated(
        CascadeSettings,
        knowledge_base=kb,
        min_score=min_score,
        **({"markers": marker} if marker else {}),
    )
    cfg = validated(
        CompositeConfig,
        name=name,
        mode=mode,
        domain=domain,
        general=general,
        data=data,
        general_data=general_data,
        classifier=classifier,
        embedder=embedder,
        threshold=threshold,
        holdout=holdout,
        seed=seed,
        cascade=cascade,
    )
    info = create_composite(STATE.store(), cfg)
    if as_json:
        emit_json(info)
        return
    out.print(f"{info.ref}  {info.mode}: domain {info.domain}, general {info.general}")
    if info.heldout:
        h = info.heldout
        out.print(
            f"router {info.classifier}: held-out accuracy {h['accuracy']:.3f} (domain recall "
            f"{h['domain_recall']:.3f}, general recall {h['general_recall']:.3f}, "
            f"{h['domain_items']}+{h['general_items']} items), threshold {info.threshold:.4f}",
            highlight=False,
        )


@composite_app.command("list")
def composite_list(as_json: bool = JSON) -> None:
    """List composite versions."""
    from luodi.collab.composite import list_composites

    infos = list_composites(STATE.store())
    if as_json:
        emit_json(infos)
        return
    rows = [
        [
            i.ref,
            i.mode,
            i.domain,
            i.general,
            i.classifier or "-",
            f"{i.heldout['accuracy']:.3f}" if i.heldout else "-",
        ]
        for i in infos
    ]
    out.print(table(None, ["composite", "mode", "domain", "general", "router", "held-out"], rows))


@composite_app.command("show")
def composite_show(
    ref: str = typer.Argument(..., help="NAME or NAME:vN."), as_json: bool = JSON
) -> None:
    """Show a composite version: members, router and its held-out accuracy, cascade checks."""
    from luodi.collab.composite import composite_info, resolve_composite

    store = STATE.store()
    a = resolve_composite(store, ref)
    info = composite_info(a)
    if as_json:
        emit_json(info)
        return
    rows = [["mode", info.mode], ["domain", info.domain], ["general", info.general]]
    if info.heldout:
        rows += [["router", f"{info.classifier}, threshold {info.threshold:.4f}"]]
        rows += [[f"held-out {k}", v] for k, v in info.heldout.items()]
    if info.cascade:
        rows += [["knowledge base", info.cascade.knowledge_base or "-"]]
        rows += [["min score", info.cascade.min_score if info.cascade.min_score else "default"]]
        rows += [["markers", ", ".join(info.cascade.markers)]]
    rows += [[f"parent ({p.role})", f"{p.kind} {p.ref}"] for p in a.parents]
    rows += [["path", str(a.path)], ["content hash", info.content_hash]]
    out.print(table(info.ref, ["field", "value"], rows))


@composite_app.command("route")
def composite_route(
    ref: str = typer.Argument(..., help="NAME or NAME:vN of a route composite."),
    texts: list[str] = typer.Argument(..., help="Questions to route."),
    as_json: bool = JSON,
) -> None:
    """Which member a route composite sends each question to, with the router's score."""
    from luodi.collab.composite import load_composite
    from luodi.errors import BadInputError

    comp = load_composite(STATE.store(), ref)
    if comp.router is None:
        raise BadInputError(f"{comp.ref} is a {comp.mode} composite; only route mode has a router")
    decided = comp.router.decide(texts)
    rows = [
        {
            "text": t,
            "member": "domain" if hit else "general",
            "model": comp.domain if hit else comp.general,
            "score": round(score, 4),
        }
        for t, (hit, score) in zip(texts, decided, strict=True)
    ]
    if as_json:
        emit_json(rows)
        return
    out.print(
        table(
            f"{comp.ref} (threshold {comp.router.threshold:.4f})",
            ["question", "member", "model", "score"],
            [list(r.values()) for r in rows],
        )
    )
