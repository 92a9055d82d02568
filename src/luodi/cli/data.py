"""`luodi data …`: the data stage's commands (thin: parse, call the core, render)."""

from __future__ import annotations

from pathlib import Path

import typer

from luodi.cli.render import emit_json, lineage_tree, out, progress_bar, table, validated
from luodi.cli.state import STATE
from luodi.data.report import DatasetResult
from luodi.errors import BadInputError

app = typer.Typer(no_args_is_help=True)

JSON = typer.Option(False, "--json", help="Print the result as JSON.")
NAME_OUT = typer.Option(None, "--name", help="Name of the new dataset (default: the input's).")


def _show_result(res: DatasetResult, as_json: bool) -> None:
    if as_json:
        emit_json(res)
        return
    splits = ", ".join(f"{k}={v}" for k, v in res.splits.items())
    out.print(
        table(
            None,
            ["dataset", "kind", "rows", "splits", "skipped"],
            [[res.dataset, res.record_kind, res.rows, splits, len(res.skipped)]],
        )
    )
    if res.operators:
        rows = [
            [
                s.step,
                s.op,
                s.records_in,
                s.kept,
                s.dropped,
                s.modified,
                ", ".join(f"{k}={v}" for k, v in s.drop_reasons.items()),
            ]
            for s in res.operators
        ]
        out.print(
            table("operators", ["#", "op", "in", "kept", "dropped", "modified", "reasons"], rows)
        )
    if res.skipped:
        shown = res.skipped[:20]
        rows = [[Path(p.path).name, p.location or "(whole file)", p.reason] for p in shown]
        more = f" (first 20 of {len(res.skipped)})" if len(res.skipped) > 20 else ""
        out.print(table(f"skipped{more}", ["file", "where", "reason"], rows))
    out.print(f"report: {res.report_html}")


def _columns(specs: list[str]) -> dict[str, str]:
    cols: dict[str, str] = {}
    for spec in specs:
        role, sep, col = spec.partition("=")
        if not sep or not role or not col:
            raise BadInputError(f"--column takes ROLE=COLUMN (e.g. question=问题), got {spec!r}")
        cols[role.strip()] = col.strip()
    return cols


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., help="Files and folders to ingest."),
    kind: str = typer.Option(..., "--kind", help="Record kind: text, qa, preference, labeled."),
    name: str = typer.Option(..., "--name", help="Dataset name (makes its next version)."),
    column: list[str] = typer.Option(
        [], "--column", help="Map a role to a column, ROLE=COLUMN (repeatable)."
    ),
    rating_scale: str = typer.Option(
        "auto", "--rating-scale", help="auto, 0-1, 1-5, 1-10, 0-10, 0-100, -1-1, thumbs."
    ),
    as_json: bool = JSON,
) -> None:
    """Load files of any supported format into a new dataset version (bad files are reported)."""
    from luodi.data.ingest import IngestConfig, run_ingest

    cfg = validated(
        IngestConfig,
        paths=paths,
        kind=kind,
        name=name,
        columns=_columns(column),
        rating_scale=rating_scale,
    )
    with progress_bar(not as_json) as p:
        res = run_ingest(STATE.store(), cfg, p)
    _show_result(res, as_json)


@app.command()
def clean(
    dataset: str = typer.Argument(..., help="Dataset to clean: NAME or NAME:vN."),
    recipe: Path | None = typer.Option(None, "--recipe", help="Recipe YAML (default per kind)."),
    name: str | None = NAME_OUT,
    engine: str = typer.Option("local", "--engine", help="local or ray (extra `scale`)."),
    as_json: bool = JSON,
) -> None:
    """Run a cleaning recipe; the result is the next version with the input as parent."""
    from luodi.data.clean import CleanConfig, run_clean

    if engine not in ("local", "ray"):
        raise BadInputError(f"--engine must be local or ray, got {engine!r}")
    cfg = CleanConfig(dataset=dataset, recipe=recipe, name=name, engine=engine)  # type: ignore[arg-type]
    with progress_bar(not as_json) as p:
        res = run_clean(STATE.store(), cfg, p)
    _show_result(res, as_json)


@app.command()
def split(
    dataset: str = typer.Argument(..., help="Dataset to split: NAME or NAME:vN."),
    method: str = typer.Option("random", "--method", help="random, stratified, time or kfold."),
    ratios: str = typer.Option("0.8,0.1,0.1", "--ratios", help="train,validation,test."),
    by: str | None = typer.Option(
        None, "--by", help="Field for stratified/time (label, meta key)."
    ),
    k: int = typer.Option(5, "--k", help="Folds for kfold."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same split)."),
    name: str | None = NAME_OUT,
    as_json: bool = JSON,
) -> None:
    """Assign train/validation/test (or k folds); near-duplicates stay in one split."""
    from pydantic import ValidationError

    from luodi.data.split import SplitConfig, run_split

    try:
        parts = [float(x) for x in ratios.split(",")]
        cfg = SplitConfig(
            dataset=dataset, name=name, method=method, ratios=parts, by=by, k=k, seed=seed
        )
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            e = exc.errors()[0]
            raise BadInputError(f"{'.'.join(map(str, e['loc']))}: {e['msg']}") from None
        raise BadInputError(f"--ratios takes numbers like 0.8,0.1,0.1: {exc}") from None
    with progress_bar(not as_json) as p:
        res = run_split(STATE.store(), cfg, p)
    _show_result(res, as_json)


@app.command()
def balance(
    dataset: str = typer.Argument(..., help="Dataset: NAME or NAME:vN."),
    by: str | None = typer.Option(None, "--by", help="Field to balance (default label)."),
    strategy: str = typer.Option("report", "--strategy", help="report or oversample."),
    target: str = typer.Option("max", "--target", help="max or a count per class."),
    seed: int = typer.Option(0, "--seed"),
    name: str | None = NAME_OUT,
    as_json: bool = JSON,
) -> None:
    """Show the class distribution, or oversample minority classes (train split only)."""
    from luodi.data.balance import BalanceConfig, balance_report, run_balance

    store = STATE.store()
    if strategy == "report":
        dist = balance_report(store, dataset, by)
        if as_json:
            emit_json(dist)
            return
        for split_name, counts in dist.items():
            rows = sorted(counts.items(), key=lambda kv: -kv[1])
            out.print(table(f"split {split_name}", ["class", "records"], rows))
        return
    cfg = validated(
        BalanceConfig,
        dataset=dataset,
        name=name,
        by=by,
        strategy=strategy,
        target=int(target) if target.isdigit() else target,
        seed=seed,
    )
    with progress_bar(not as_json) as p:
        res = run_balance(store, cfg, p)
    _show_result(res, as_json)


@app.command()
def mix(
    sources: list[str] = typer.Option(
        ...,
        "--from",
        help="A source: NAME[:vN][#split][*N] (split to take, N copies); repeatable.",
    ),
    name: str = typer.Option(..., "--name", help="Name of the mixed dataset."),
    into: str | None = typer.Option(
        None, "--into", help="Put every record into this split (default: keep their own)."
    ),
    dedup: str = typer.Option("exact", "--dedup", help="exact or none."),
    as_json: bool = JSON,
) -> None:
    """Combine dataset versions into one (e.g. training data + feedback), lineage to all."""
    from luodi.data.mix import MixConfig, MixSource, run_mix

    parsed = [MixSource.parse(s, into) for s in sources]
    cfg = validated(MixConfig, sources=parsed, name=name, dedup=dedup)
    with progress_bar(not as_json) as p:
        res = run_mix(STATE.store(), cfg, p)
    _show_result(res, as_json)


@app.command("list")
def list_(
    name: str | None = typer.Argument(None, help="Only versions of this dataset."),
    as_json: bool = JSON,
) -> None:
    """List dataset versions."""
    from luodi.data.versions import list_datasets

    rows = list_datasets(STATE.store(), name)
    if as_json:
        emit_json(rows)
        return
    out.print(
        table(
            None,
            ["dataset", "kind", "stage", "rows", "splits", "parents", "created"],
            [
                [
                    r.dataset,
                    r.record_kind,
                    r.stage,
                    r.rows,
                    ", ".join(f"{k}={v}" for k, v in r.splits.items()),
                    ", ".join(r.parents),
                    r.created_at.strftime("%Y-%m-%d %H:%M"),
                ]
                for r in rows
            ],
        )
    )


@app.command()
def show(
    dataset: str = typer.Argument(..., help="NAME or NAME:vN."),
    as_json: bool = JSON,
) -> None:
    """Show a dataset version: counts, sources, skipped inputs, operators, report path."""
    from luodi.data.versions import show_dataset

    d = show_dataset(STATE.store(), dataset)
    if as_json:
        emit_json(d)
        return
    out.print(
        table(
            d.dataset,
            ["field", "value"],
            [
                ["kind", d.record_kind],
                ["stage", d.stage],
                ["rows", d.rows],
                ["splits", ", ".join(f"{k}={v}" for k, v in d.splits.items())],
                ["parents", ", ".join(d.parents) or "-"],
                ["content hash", d.content_hash],
                ["created", f"{d.created_at:%Y-%m-%d %H:%M:%S} by {d.created_by}"],
                ["sources", len(d.sources)],
                ["skipped", len(d.skipped)],
                ["report", d.report_html],
            ],
        )
    )
    if d.operators:
        rows = [
            [o["step"], o["op"], o["records_in"], o["kept"], o["dropped"], o["modified"]]
            for o in d.operators
        ]
        out.print(table("operators", ["#", "op", "in", "kept", "dropped", "modified"], rows))
    if d.skipped:
        rows = [
            [Path(s["path"]).name, s.get("location") or "(whole file)", s["reason"]]
            for s in d.skipped[:20]
        ]
        out.print(table("skipped", ["file", "where", "reason"], rows))


@app.command()
def diff(
    a: str = typer.Argument(..., help="Version A: NAME:vN."),
    b: str = typer.Argument(..., help="Version B: NAME:vN."),
    as_json: bool = JSON,
) -> None:
    """Compare two versions record by record: added, removed, changed, re-split."""
    from luodi.data.versions import diff_datasets

    d = diff_datasets(STATE.store(), a, b)
    if as_json:
        emit_json(d)
        return
    out.print(
        table(
            f"{d.a} → {d.b}",
            ["rows A", "rows B", "added", "removed", "changed", "resplit", "unchanged"],
            [[d.rows_a, d.rows_b, d.added, d.removed, d.changed, d.resplit, d.unchanged]],
        )
    )
    for kind_, exs in d.examples.items():
        for ex in exs:
            text = ex.get("text") or f"{ex.get('before', '')[:80]!r} → {ex.get('after', '')[:80]!r}"
            out.print(f"  {kind_:8} {ex['id']}  {text[:160]}")


@app.command()
def export(
    dataset: str = typer.Argument(..., help="NAME or NAME:vN."),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl, alpaca, sharegpt, openai, dpo."),
    output: Path = typer.Option(..., "--output", "-o", help="File to write (JSON lines)."),
    split_: str | None = typer.Option(None, "--split", help="Only this split."),
    as_json: bool = JSON,
) -> None:
    """Export a version for training tools (LLaMA-Factory alpaca/sharegpt, OpenAI, TRL DPO)."""
    from luodi.data.versions import export_dataset

    res = export_dataset(STATE.store(), dataset, fmt, output, split_)
    if as_json:
        emit_json(res)
        return
    out.print(f"wrote {res.records} records of {res.dataset} as {res.format} to {res.output}")
    if res.skipped:
        out.print(f"skipped {len(res.skipped)} records that do not fit {res.format}")


@app.command()
def lineage(
    dataset: str = typer.Argument(..., help="NAME or NAME:vN."),
    as_json: bool = JSON,
) -> None:
    """Walk a version's parents back to its source files (path + sha256)."""
    from luodi.data.datasets import KIND

    node = STATE.store().lineage(dataset, KIND)
    if as_json:
        emit_json(node)
        return

    out.print(lineage_tree(node))


@app.command()
def operators(as_json: bool = JSON) -> None:
    """List the cleaning operators with their parameters (for writing recipes)."""
    from luodi.data.ops import OPERATORS, load_builtin_operators

    load_builtin_operators()
    rows = []
    for name in OPERATORS.names():
        cls = OPERATORS.get(name)
        params = {k: (f.description or "") for k, f in cls.model_fields.items()}
        doc = (cls.__doc__ or "").strip().splitlines()
        rows.append(
            {
                "op": name,
                "kinds": list(cls.kinds),
                "global": cls.is_global,
                "params": params,
                "doc": doc[0] if doc else "",
            }
        )
    if as_json:
        emit_json({"operators": rows})
        return
    out.print(
        table(
            None,
            ["op", "kinds", "what", "params"],
            [[r["op"], ",".join(r["kinds"]), r["doc"], ", ".join(r["params"])] for r in rows],
        )
    )
