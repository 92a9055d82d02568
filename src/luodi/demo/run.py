"""`luodi demo`: the whole lifecycle on the bundled sample enterprise (星河精密, examples/xinghe).

data (ingest → clean → split) → knowledge base → evaluate the base on held-out questions →
LoRA SFT → evaluate, compare, gate → production → the gateway answers users with citations
through the `openai` client → users rate answers and correct bad ones → feedback becomes SFT
and DPO datasets → v2 trained on the FAQ plus the corrections → evaluate, gate → canary 20%.
Every step calls the same core function as its CLI command, so every artifact has lineage.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from luodi.demo import models as M
from luodi.demo import serving as S
from luodi.demo.data import DemoStep, examples_dir, run_data
from luodi.progress import Progress, no_progress
from luodi.store import Store

MODEL = "xinghe-assistant"
KB = "xinghe-kb"


class DemoConfig(BaseModel):
    """How much of the loop the demo runs, and on what."""

    base: str = Field(default="default", description="Base model (SmolLM2-135M-Instruct).")
    embedder: str = Field(default="e5", description="Knowledge-base embedder.")
    train_steps: int = Field(default=30, ge=1, description="LoRA steps per training run.")
    users: int = Field(default=6, ge=1, description="Simulated users (two answers each).")
    max_new_tokens: int = Field(default=64, ge=8, description="Answer length in eval.")
    loop: bool = Field(default=True, description="False: the data stage and knowledge base only.")


class FeedbackSummary(BaseModel):
    """What the users' feedback became."""

    requests: int
    rated: int
    corrections: int
    sft_dataset: str | None
    dpo_dataset: str | None
    training_mix: str | None = Field(description="FAQ train split + corrections, for v2.")


class DemoResult(BaseModel):
    """What `luodi demo` made."""

    examples: str
    steps: list[DemoStep]
    knowledge_base: str
    versions: list[M.VersionScore] = Field(default_factory=list)
    production: str | None = None
    answers: list[S.Answer] = Field(default_factory=list)
    feedback: FeedbackSummary | None = None
    canary: str | None = Field(default=None, description="The deployment version with v2 at 20%.")
    reports: dict[str, str] = Field(default_factory=dict, description="What → HTML report.")
    seconds: float = 0.0


def _kb(store: Store, root: Path, embedder: str, progress: Progress) -> str:
    from luodi.errors import ConflictError
    from luodi.rag.kb import add_documents, create_kb
    from luodi.rag.kb_models import KBConfig

    progress(task="demo", message="building the knowledge base (handbook + manuals)")
    try:
        create_kb(store, KBConfig(name=KB, team=S.TEAM, embedder=embedder))
    except ConflictError:
        pass  # a second run adds the same files: unchanged documents are skipped
    xinghe = root / "xinghe"
    change = add_documents(store, KB, [xinghe / "handbook", xinghe / "manuals"], progress=progress)
    return change.kb.ref


def _heldout(store: Store, root: Path, progress: Progress) -> str:
    from luodi.data.ingest import IngestConfig, run_ingest

    res = run_ingest(
        store,
        IngestConfig(
            paths=[root / "eval" / "xinghe_heldout.jsonl"], kind="qa", name="xinghe-heldout"
        ),
        progress,
    )
    return res.dataset


def run_demo(
    store: Store,
    cfg: DemoConfig | None = None,
    examples: Path | None = None,
    progress: Progress = no_progress,
    hold: Callable[[S.Running], None] | None = None,
) -> DemoResult:
    """Run the loop (see the module docstring); `hold`, when given, is called with the running
    gateway before it stops (`luodi demo --keep-serving` waits there)."""
    cfg = cfg or DemoConfig()
    started = time.perf_counter()
    root = examples or examples_dir()
    steps = run_data(store, root, progress)
    kb = _kb(store, root, cfg.embedder, progress)
    res = DemoResult(examples=str(root), steps=steps, knowledge_base=kb)
    if cfg.loop:
        _loop(store, cfg, root, res, progress, hold)
    res.seconds = round(time.perf_counter() - started, 1)
    return res


def _loop(
    store: Store,
    cfg: DemoConfig,
    root: Path,
    res: DemoResult,
    progress: Progress,
    hold: Callable[[S.Running], None] | None,
) -> None:
    from luodi.registry.stages import set_stage

    faq = next(s.dataset for s in res.steps if s.record_kind == "qa")
    heldout = _heldout(store, root, progress)
    base = M.score_base(store, cfg.base, heldout, cfg.max_new_tokens, progress)
    v1_ref, n, loss = M.train(
        store, base=cfg.base, dataset=faq, name=MODEL, steps=cfg.train_steps, progress=progress
    )
    v1 = M.score(store, v1_ref, heldout, cfg.max_new_tokens, progress)
    v1.trained_on, v1.steps, v1.train_loss = faq, n, loss
    res.versions = [s for s in (base, v1) if s is not None]
    if base is not None and not M.gate_against(store, v1, base):
        v1.stage = "candidate"
        return  # a fine-tune that is worse than its base is not released
    v1.stage = set_stage(store, v1_ref, "production", reason="luodi demo: gate passed").to_stage
    res.production = v1_ref
    with S.gateway(store) as run:
        S.wait_serving(run, S.deploy(store, [(v1_ref, 100.0)], res.knowledge_base))
        res.answers = S.users(run, root, cfg.users, cfg.max_new_tokens * 2, progress)
        res.feedback = _feedback(store, faq, res.answers, progress)
        if res.feedback.training_mix is not None:
            _v2(store, cfg, res, v1, heldout, progress)
        res.reports = _reports(store, res)
        if res.canary is not None:
            S.wait_serving(run, res.canary)
            for q in S.questions(root, 2):  # the canary answers a share of the traffic
                res.answers.append(
                    S.ask(run, q["question"], temperature=0.0, seed=0, max_tokens=64)
                )
        if hold is not None:
            hold(run)


def _feedback(
    store: Store, faq: str, answers: list[S.Answer], progress: Progress
) -> FeedbackSummary:
    from luodi.data.mix import MixConfig, MixSource, run_mix
    from luodi.feedback.export import FeedbackExportConfig, run_feedback_export

    progress(task="demo", message="turning feedback into datasets")
    made: dict[str, str | None] = {}
    for to in ("sft", "dpo"):
        out = run_feedback_export(
            store,
            FeedbackExportConfig(
                to=to, name=f"xinghe-feedback-{to}", deployment=S.DEPLOYMENT, dedup_against=faq
            ),
        )
        made[to] = out.dataset
    mix = None
    if made["sft"] is not None:
        mix = run_mix(
            store,
            MixConfig(
                name="xinghe-faq-plus-feedback",
                sources=[
                    MixSource(dataset=faq),
                    MixSource(dataset=made["sft"], into="train", repeat=2),
                ],
            ),
        ).dataset
    return FeedbackSummary(
        requests=len(answers),
        rated=sum(a.stars is not None for a in answers),
        corrections=sum(a.corrected for a in answers),
        sft_dataset=made["sft"],
        dpo_dataset=made["dpo"],
        training_mix=mix,
    )


def _v2(
    store: Store,
    cfg: DemoConfig,
    res: DemoResult,
    production: M.VersionScore,
    heldout: str,
    progress: Progress,
) -> None:
    from luodi.registry.stages import set_stage

    assert res.feedback is not None and res.feedback.training_mix is not None
    data = res.feedback.training_mix
    # as many epochs as v1 had: the mix holds v1's training data plus the corrections
    assert production.trained_on is not None
    grown = M.train_records(store, data) / max(1, M.train_records(store, production.trained_on))
    steps = max(cfg.train_steps, round(cfg.train_steps * grown))
    v2_ref, n, loss = M.train(
        store, base=cfg.base, dataset=data, name=MODEL, steps=steps, progress=progress
    )
    v2 = M.score(store, v2_ref, heldout, cfg.max_new_tokens, progress)
    v2.trained_on, v2.steps, v2.train_loss = data, n, loss
    res.versions.append(v2)
    if not M.gate_against(store, v2, production):
        v2.stage = "candidate"
        return
    v2.stage = set_stage(store, v2_ref, "staging", reason="luodi demo: canary").to_stage
    assert res.production is not None
    res.canary = S.deploy(store, [(res.production, 80.0), (v2_ref, 20.0)], res.knowledge_base)


def _reports(store: Store, res: DemoResult) -> dict[str, str]:
    from luodi.eval.report import build_report

    out = store.settings.home / "reports"
    reports: dict[str, str] = {}
    for before, v in zip(res.versions, res.versions[1:], strict=False):  # each vs the one before
        path = out / f"{v.eval_run.replace(':', '-')}.html"
        reports[f"eval {v.model} vs {before.model}"] = build_report(
            store, v.eval_run, [before.eval_run], path
        ).path
    for s in res.steps:
        reports[f"data {s.dataset.split(':')[0]}"] = s.report_html
    return reports
