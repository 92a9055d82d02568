"""Rendering for the CLI: Rich progress for the Progress callback, tables, JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from luodi.progress import Progress as ProgressFn
from luodi.progress import no_progress

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _plain(obj: Any) -> Any:
    return obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj


def emit_json(obj: BaseModel | Sequence[BaseModel | dict[str, Any]] | dict[str, Any]) -> None:
    """Print a result (or list of results) as JSON on stdout."""
    data = [_plain(o) for o in obj] if isinstance(obj, list | tuple) else _plain(obj)
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def validated(model: Any, **fields: Any) -> Any:
    """`model(**fields)`, a validation failure raised as a one-line BadInputError (exit 2)."""
    from pydantic import ValidationError

    from luodi.errors import BadInputError

    try:
        return model(**fields)
    except ValidationError as exc:
        e = exc.errors()[0]
        raise BadInputError(f"{'.'.join(map(str, e['loc']))}: {e['msg']}") from None


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A Rich table with the given header and rows (values stringified)."""
    t = Table(title=title, title_justify="left", show_lines=False)
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    return t


# Shown first, in this order; other metrics fill up to MAX_METRICS.
PREFERRED = ("loss", "eval_loss", "lr", "tokens_per_s")
MAX_METRICS = 4


def _metrics_text(metrics: dict[str, Any]) -> str:
    keys = [k for k in PREFERRED if k in metrics]
    keys += [k for k in metrics if k not in keys and k not in ("epoch", "grad_norm")]
    parts = []
    for k in keys[:MAX_METRICS]:
        v = metrics[k]
        parts.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
    return " · ".join(parts)


def lineage_tree(node: Any) -> Any:
    """A Rich tree of a LineageNode: each parent with its role, source files with sha256."""
    from rich.tree import Tree

    def build(tree: Tree, n: Any) -> None:
        for src in n.sources:
            tree.add(f"[dim]{src['path']}  sha256:{src['sha256'][:12]}[/dim]")
        for p in n.parents:
            build(tree.add(f"{p.kind} {p.ref} ({p.role})"), p)

    root = Tree(f"{node.kind} {node.ref}  {node.content_hash[:12]}")
    build(root, node)
    return root


class RichProgress:
    """A Progress callback that drives one Rich progress bar per task name."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def __call__(
        self,
        *,
        task: str,
        total: int | None = None,
        advance: int = 0,
        message: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        if task not in self.tasks:
            self.tasks[task] = self.progress.add_task(task, total=total)
        tid = self.tasks[task]
        desc = task if not message else f"{task}: {message[:40]}"
        if metrics:
            desc += " " + _metrics_text(metrics)
        self.progress.update(tid, advance=advance, description=desc)
        if total is not None:
            self.progress.update(tid, total=total)


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[ProgressFn]:
    """A Rich progress callback on stderr when it is a terminal; a silent one otherwise."""
    if not enabled or not err.is_terminal:
        yield no_progress
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    ) as p:
        yield RichProgress(p)
