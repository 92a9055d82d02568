"""The demo's model steps: train a version, score it on the held-out questions, gate it."""

from __future__ import annotations

from pydantic import BaseModel, Field

from luodi.progress import Progress
from luodi.store import Store

SUITE = "xinghe-heldout"
SCORE = "rouge_l"  # the headline metric of the generate task (CJK text scored per character)


class VersionScore(BaseModel):
    """One model (or base) scored on the held-out questions."""

    model: str = Field(description="The model version or base scored.")
    eval_run: str = Field(description="Its eval run.")
    rouge_l: float
    token_f1: float
    chrf: float
    gate: str | None = Field(default=None, description="passed/failed and the gate artifact.")
    stage: str | None = Field(default=None, description="Registry stage after the demo.")
    trained_on: str | None = Field(default=None, description="Training dataset version.")
    steps: int | None = None
    train_loss: float | None = None


def suite(heldout: str, max_new_tokens: int) -> object:
    """The held-out suite: answer paraphrased FAQ questions, compare with the FAQ answers."""
    from luodi.eval.suite import Suite

    return Suite(
        name=SUITE,
        description="Paraphrased customer questions whose answers are in the FAQ.",
        tasks=[{"task": "generate", "dataset": heldout, "max_new_tokens": max_new_tokens}],
    )


def score(
    store: Store, target: str, heldout: str, max_new_tokens: int, progress: Progress
) -> VersionScore:
    """Run the held-out suite on `target` and keep its headline metrics."""
    from luodi.eval.runner import run_eval

    progress(task="demo", message=f"evaluating {target} on the held-out questions")
    res = run_eval(store, target, suite(heldout, max_new_tokens), progress=progress)  # type: ignore[arg-type]
    m = next(t for t in res.tasks if t.name == "generate").metrics
    return VersionScore(
        model=res.target,
        eval_run=res.run,
        rouge_l=m["rouge_l"],
        token_f1=m["token_f1"],
        chrf=m["chrf"],
    )


def score_base(
    store: Store, base: str, heldout: str, max_new_tokens: int, progress: Progress
) -> VersionScore | None:
    """The base's score, or None for a base that cannot answer before training (an untrained
    tiny model: its tokenizer is made with its first training run)."""
    from luodi.models.base import resolve_base

    if base.startswith("tiny:") or resolve_base(store, base).meta.get("format") == "tiny":
        return None
    return score(store, base, heldout, max_new_tokens, progress)


def train(
    store: Store,
    *,
    base: str,
    dataset: str,
    name: str,
    steps: int,
    progress: Progress,
) -> tuple[str, int, float | None]:
    """LoRA SFT of `base` on `dataset`'s train split: (model version, steps, train loss)."""
    from luodi.train.config import TrainConfig
    from luodi.train.runner import run_train

    progress(task="demo", message=f"fine-tuning {base} on {dataset} ({steps} LoRA steps)")
    cfg = TrainConfig(
        stage="sft",
        base=base,
        dataset=dataset,
        name=name,
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
    return res.model, res.steps, res.train_loss


def train_records(store: Store, dataset: str) -> int:
    """Records in the train split of `dataset` (all of them when it has no splits)."""
    meta = store.resolve(dataset, "dataset").meta
    splits = meta.get("splits") or {}
    return int(splits.get("train", meta.get("rows", 0)))


def gate_against(store: Store, candidate: VersionScore, baseline: VersionScore) -> bool:
    """The release gate: the candidate must not be significantly worse than the baseline on
    the headline metrics (paired bootstrap over the held-out items). Stored as an artifact."""
    from luodi.eval.gate import GateRules, gate

    rules = GateRules(no_regression=[f"generate.{SCORE}", "generate.token_f1"])
    verdict = gate(store, candidate.eval_run, baseline.eval_run, rules)
    candidate.gate = f"{'passed' if verdict.passed else 'failed'} ({verdict.ref})"
    return verdict.passed
