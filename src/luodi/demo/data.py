"""`luodi demo`: the lifecycle on the bundled sample enterprise (星河精密, examples/xinghe).

The loop so far: every sample folder is ingested as its record kind (bad files included, to
show they are reported and skipped), cleaned with the company's recipes (examples/recipes: PII
masked except the public hotline and mailbox), and split; the labeled tickets are balanced.
Then the default base model (SmolLM2-135M-Instruct) is fine-tuned with LoRA on the FAQ's train
split and the new version is promoted to staging. Later stages extend this function.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

from luodi.data.balance import BalanceConfig, run_balance
from luodi.data.clean import CleanConfig, run_clean
from luodi.data.ingest import IngestConfig, run_ingest
from luodi.data.split import SplitConfig, run_split
from luodi.errors import NotFoundError
from luodi.progress import Progress, no_progress
from luodi.store import Store


class DemoStep(BaseModel):
    """One dataset the demo made: raw → clean (→ split/balance) figures and the report."""

    dataset: str = Field(description="Final version made for this sample set.")
    record_kind: str
    files: int = Field(description="Files ingested.")
    skipped_files: int = Field(description="Files rejected, with reasons in the report.")
    skipped_rows: int = Field(description="Rows rejected (malformed, missing fields, ...).")
    raw_rows: int
    clean_rows: int
    pii_masked: int = Field(description="Records whose PII was masked.")
    splits: dict[str, int]
    report_html: str = Field(description="The clean version's quality report.")


class DemoModel(BaseModel):
    """The model version the demo trained."""

    model: str
    stage: str
    base: str
    steps: int
    train_loss: float | None
    eval_loss: float | None
    tokens_per_s: float | None


class DemoResult(BaseModel):
    """What `luodi demo` made."""

    examples: str
    steps: list[DemoStep]
    model: DemoModel | None = Field(default=None, description="None with train=False.")


# (folder under examples/xinghe, record kind, dataset name, split method, split field)
SAMPLES: list[tuple[list[str], str, str, str, str | None]] = [
    (["handbook", "manuals", "corpus", "bad"], "text", "xinghe-docs", "random", None),
    (["faq"], "qa", "xinghe-faq", "stratified", "category"),
    (["feedback"], "preference", "xinghe-feedback", "random", None),
    (["tickets"], "labeled", "xinghe-tickets", "stratified", "label"),
]


def examples_dir() -> Path:
    """The sample data: $LUODI_EXAMPLES, the source checkout's examples/, or ./examples."""
    candidates = [
        Path(os.environ["LUODI_EXAMPLES"]) if os.environ.get("LUODI_EXAMPLES") else None,
        Path(__file__).resolve().parents[2] / "examples",
        Path.cwd() / "examples",
    ]
    for c in candidates:
        if c is not None and (c / "xinghe").is_dir():
            return c
    raise NotFoundError("sample data not found: set LUODI_EXAMPLES to the examples/ folder")


def run_demo(
    store: Store,
    examples: Path | None = None,
    progress: Progress = no_progress,
    train: bool = True,
    train_steps: int = 30,
) -> DemoResult:
    """Run the data stage over every sample set, then (with `train`) fine-tune the default base
    on the FAQ and promote it to staging; returns a summary per dataset and the model."""
    root = examples or examples_dir()
    steps: list[DemoStep] = []
    for folders, kind, name, method, by in SAMPLES:
        raw = run_ingest(
            store,
            IngestConfig(paths=[root / "xinghe" / f for f in folders], kind=kind, name=name),
            progress,
        )
        recipe = root / "recipes" / f"{kind}.yaml"
        clean = run_clean(
            store,
            CleanConfig(dataset=raw.dataset, recipe=recipe if recipe.exists() else None),
            progress,
        )
        final = run_split(
            store,
            SplitConfig(dataset=clean.dataset, method=method, by=by, ratios=[0.8, 0.1, 0.1]),
            progress,
        )
        if kind == "labeled":
            final = run_balance(
                store, BalanceConfig(dataset=final.dataset, strategy="oversample"), progress
            )
        files = {p.path for p in raw.skipped if p.location is None}
        steps.append(
            DemoStep(
                dataset=final.dataset,
                record_kind=kind,
                files=len(store.resolve(raw.dataset, "dataset").meta["sources"]),
                skipped_files=len(files),
                skipped_rows=sum(1 for p in raw.skipped if p.location is not None),
                raw_rows=raw.rows,
                clean_rows=clean.rows,
                pii_masked=sum(s.modified for s in clean.operators if s.op == "pii_mask"),
                splits=final.splits,
                report_html=clean.report_html,
            )
        )
    faq = next(s.dataset for s in steps if s.record_kind == "qa")
    model = _train(store, faq, train_steps, progress) if train else None
    return DemoResult(examples=str(root), steps=steps, model=model)


def _train(store: Store, faq: str, steps: int, progress: Progress) -> DemoModel:
    """LoRA on SmolLM2 over the FAQ's train split (its validation split is evaluated)."""
    from luodi.registry.stages import set_stage
    from luodi.train.config import TrainConfig
    from luodi.train.runner import run_train

    cfg = TrainConfig(
        stage="sft",
        base="default",
        dataset=faq,
        name="xinghe-assistant",
        method="lora",
        lora_r=16,
        lora_alpha=32,
        target_modules="all",
        learning_rate=2e-3,
        max_steps=steps,
        batch_size=8,
        cutoff_len=384,
        compute="bf16",
        eval_steps=steps,
    )
    res = run_train(store, cfg, progress)
    change = set_stage(store, res.model, "staging", reason="luodi demo")
    info = store.resolve(res.model, "model")
    base = next(p.ref for p in info.parents if p.role == "base")
    return DemoModel(
        model=res.model,
        stage=change.to_stage,
        base=base,
        steps=res.steps,
        train_loss=res.train_loss,
        eval_loss=res.eval_loss,
        tokens_per_s=res.tokens_per_s,
    )
