"""The pipeline's stage kinds over the data stage and knowledge bases (the model-side kinds
are in `stages_model`, registered when this module loads).

Each kind calls the function its CLI command calls, with the same config model:

| uses | config | calls | output |
| --- | --- | --- | --- |
| ingest | IngestConfig | data.ingest.run_ingest | dataset NAME:vN |
| clean | CleanConfig | data.clean.run_clean | dataset |
| split | SplitConfig | data.split.run_split | dataset |
| balance | BalanceConfig | data.balance.run_balance | dataset |
| mix | MixConfig | data.mix.run_mix | dataset |
| kb | KBStageConfig | rag.kb: create_kb, rebuild, add_documents, delete_documents | kb |
| train | TrainConfig | train.runner.run_train | model |
| eval | EvalStageConfig | eval.runner.run_eval | eval_run |
| gate | GateStageConfig | eval.gate.gate | eval_gate (fails unless passed) |
| register | RegisterConfig | registry.stages.set_stage | model |
| deploy | DeploymentSpec | serve.deployments.apply | deployment |
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field

from luodi.data.balance import BalanceConfig
from luodi.data.clean import CleanConfig
from luodi.data.ingest import IngestConfig
from luodi.data.mix import MixConfig
from luodi.data.split import SplitConfig
from luodi.errors import NotFoundError
from luodi.pipeline.base import (
    STAGES,
    StageContext,
    StageOutput,
    file_input,
    files_input,
    stage_kind,
)
from luodi.rag.kb_models import KBConfig

__all__ = ["STAGES"]


# -- data ------------------------------------------------------------------------------------
def _dataset_output(ctx: StageContext, res: Any) -> StageOutput:
    from luodi.data.datasets import resolve

    splits = ",".join(f"{k}={v}" for k, v in res.splits.items() if k != "unsplit")
    return StageOutput.of(
        resolve(ctx.store, res.dataset),
        rows=res.rows,
        splits=splits or None,
        skipped=len(res.skipped) or None,
    )


def _dataset(ctx: StageContext, ref: str, label: str = "dataset") -> dict[str, str]:
    from luodi.data.datasets import resolve

    return ctx.artifact(resolve(ctx.store, ref), label)


@stage_kind(
    "ingest",
    "Files and folders to the next version of a dataset (luodi data ingest).",
    IngestConfig,
    inputs=lambda ctx, cfg: files_input(cfg.paths),
    output_kind="dataset",
)
def _ingest(ctx: StageContext, cfg: IngestConfig) -> StageOutput:
    from luodi.data.ingest import run_ingest

    return _dataset_output(ctx, run_ingest(ctx.store, cfg, ctx.progress))


@stage_kind(
    "clean",
    "A cleaning recipe over a dataset version (luodi data clean).",
    CleanConfig,
    inputs=lambda ctx, cfg: {**_dataset(ctx, cfg.dataset), **file_input(cfg.recipe, "recipe")},
    output_kind="dataset",
)
def _clean(ctx: StageContext, cfg: CleanConfig) -> StageOutput:
    from luodi.data.clean import run_clean

    return _dataset_output(ctx, run_clean(ctx.store, cfg, ctx.progress))


@stage_kind(
    "split",
    "Train/validation/test (or k folds) of a dataset version (luodi data split).",
    SplitConfig,
    inputs=lambda ctx, cfg: _dataset(ctx, cfg.dataset),
    output_kind="dataset",
)
def _split(ctx: StageContext, cfg: SplitConfig) -> StageOutput:
    from luodi.data.split import run_split

    return _dataset_output(ctx, run_split(ctx.store, cfg, ctx.progress))


@stage_kind(
    "balance",
    "Oversample minority classes of a dataset version (luodi data balance).",
    BalanceConfig,
    inputs=lambda ctx, cfg: _dataset(ctx, cfg.dataset),
    output_kind="dataset",
)
def _balance(ctx: StageContext, cfg: BalanceConfig) -> StageOutput:
    from luodi.data.balance import run_balance

    return _dataset_output(ctx, run_balance(ctx.store, cfg, ctx.progress))


@stage_kind(
    "mix",
    "Combine dataset versions into one (luodi data mix).",
    MixConfig,
    inputs=lambda ctx, cfg: {
        k: v
        for i, s in enumerate(cfg.sources)
        for k, v in _dataset(ctx, s.dataset, f"source {i}").items()
    },
    output_kind="dataset",
)
def _mix(ctx: StageContext, cfg: MixConfig) -> StageOutput:
    from luodi.data.mix import run_mix

    return _dataset_output(ctx, run_mix(ctx.store, cfg, ctx.progress))


# -- knowledge bases -------------------------------------------------------------------------
class KBStageConfig(KBConfig):
    """A knowledge base built from files: created when missing, rebuilt when its embedder,
    chunking or index changed, then brought up to date with the files."""

    model_config = ConfigDict(extra="forbid")

    paths: list[Path] = Field(
        min_length=1, description="Files and folders the knowledge base holds (walked)."
    )
    tags: list[str] = Field(default_factory=list, description="Tags of the added documents.")
    prune: bool = Field(
        default=True,
        description="Remove documents no longer found under `paths`, so the knowledge base "
        "holds exactly these files; false only adds and updates.",
    )


def _kb_inputs(ctx: StageContext, cfg: KBStageConfig) -> dict[str, str]:
    from luodi.rag.kb_docs import walk
    from luodi.store.hashing import sha256_file

    # Keyed by the name a document is cited by: that is what the knowledge base stores.
    return {f"document {f.source}": sha256_file(f.path) for f in walk(cfg.paths)}


def _embedder_name(name: str) -> str:
    """The name a knowledge base records for embedder `name` (a folder by its resolved path),
    without loading the embedder."""
    from luodi.rag.embed import EMBEDDERS

    if name in EMBEDDERS or name.startswith("openai:"):
        return name
    return str(Path(name).expanduser().resolve())


def _kb_settings(cfg: KBConfig) -> dict[str, Any]:
    return cfg.model_dump(mode="json", include={"embedder", "chunk", "index"})


@stage_kind(
    "kb",
    "Build a knowledge base from files (luodi kb create / add / delete / rebuild).",
    KBStageConfig,
    inputs=_kb_inputs,
    output_kind="knowledge_base",
)
def _kb(ctx: StageContext, cfg: KBStageConfig) -> StageOutput:
    from luodi.errors import BadInputError
    from luodi.rag.kb import (
        KIND,
        add_documents,
        config_of,
        create_kb,
        delete_documents,
        rebuild,
        tags_of,
    )
    from luodi.rag.kb_build import read_documents
    from luodi.rag.kb_docs import walk

    store = ctx.store
    plain = KBConfig.model_validate(cfg.model_dump(exclude={"paths", "tags", "prune"}))
    try:
        current = store.resolve(cfg.name, KIND)
    except NotFoundError:
        current = None
    if current is None:
        create_kb(store, plain)
    else:
        have = config_of(current)
        if have.team != cfg.team:
            raise BadInputError(
                f"knowledge base {cfg.name!r} belongs to team {have.team!r}, not {cfg.team!r}"
            )
        wanted = _kb_settings(plain.model_copy(update={"embedder": _embedder_name(cfg.embedder)}))
        if _kb_settings(have) != wanted:
            rebuild(
                store, cfg.name, cfg.embedder, chunk=cfg.chunk, index=cfg.index,
                progress=ctx.progress,
            )  # fmt: skip
    change = add_documents(store, cfg.name, cfg.paths, tags_of(cfg.tags), ctx.progress)
    removed: list[str] = []
    if cfg.prune:
        sources = {f.source for f in walk(cfg.paths)}
        latest = store.resolve(cfg.name, KIND)
        gone = [d.source for d in read_documents(latest) if d.source not in sources]
        if gone:
            removed = delete_documents(store, cfg.name, gone).removed
    info = store.resolve(cfg.name, KIND)
    return StageOutput.of(
        info,
        documents=len(read_documents(info)),
        added=len(change.added) or None,
        removed=len(removed) or None,
        skipped=len([s for s in change.skipped if not s.reason.startswith("unchanged")]) or None,
    )


from luodi.pipeline import stages_model  # noqa: E402,F401  (registers the model-side kinds)
