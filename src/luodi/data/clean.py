"""`luodi data clean`: a recipe of operators over a dataset version makes the next version."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from luodi.data.datasets import iter_batches, new_dataset, record_kind, resolve
from luodi.data.ops import default_recipe, load_recipe
from luodi.data.pipeline import run_ops
from luodi.data.report import DatasetReport, DatasetResult, SourceFile
from luodi.progress import Progress, no_progress
from luodi.store import Store


class CleanConfig(BaseModel):
    """Which dataset version to clean, with which recipe, on which engine."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="Dataset to clean: NAME (latest) or NAME:vN.")
    name: str | None = Field(
        default=None, description="Name of the cleaned dataset. Default: the input's name."
    )
    recipe: Path | None = Field(
        default=None, description="Recipe YAML. Default: the built-in recipe of the record kind."
    )
    engine: Literal["local", "ray"] = Field(
        default="local", description="local (this process) or ray (Ray Data; extra `scale`)."
    )


def run_clean(store: Store, cfg: CleanConfig, progress: Progress = no_progress) -> DatasetResult:
    """Run the recipe over `cfg.dataset` and register the survivors as the next version.

    The new version's parent is the input version; its report lists each operator's
    records in/kept/dropped/modified with examples per drop reason.
    """
    parent = resolve(store, cfg.dataset)
    kind = record_kind(parent)
    recipe = load_recipe(cfg.recipe) if cfg.recipe else default_recipe(kind.name)
    ops = recipe.build(kind)
    report = DatasetReport(
        name=cfg.name or parent.name,
        stage="clean",
        record_kind=kind.name,
        sources=[SourceFile(**s) for s in parent.meta.get("sources", [])],
        notes={
            "recipe": recipe.model_dump(),
            "recipe_file": str(cfg.recipe) if cfg.recipe else f"default ({kind.name})",
            "engine": cfg.engine,
        },
    )
    with new_dataset(store, report, parents=[parent]) as draft:
        result = run_ops(
            ops, iter_batches(parent), draft.write, engine=cfg.engine, progress=progress
        )
        report.operators = result.operators
        report.notes["records_in"] = result.records_in
    assert draft.result is not None
    return draft.result
