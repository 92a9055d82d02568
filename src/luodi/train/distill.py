"""distill: a student learns a teacher's output distribution (knowledge distillation).

loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE,
averaged over the positions that have a target: every token of packed text records, the
assistant tokens of qa conversations (the same rows cpt and sft train on). T^2 keeps the KL
gradient's scale independent of the temperature (Hinton et al.). The teacher is a registered
model version or a base model; logits are only comparable over the same vocabulary, so the
student must share its tokenizer (a `tiny:<preset>` student is built on the teacher's).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase, Trainer, TrainingArguments

from luodi.data.records import Record, get_kind
from luodi.errors import BadInputError
from luodi.models.base import resolve_base
from luodi.models.loading import load_base
from luodi.store import ArtifactInfo, Store
from luodi.train.config import TrainConfig
from luodi.train.data import IGNORE, ExampleDataset, PadCollator, RecordSplit
from luodi.train.pretrain import PretrainStage
from luodi.train.sft import SftStage
from luodi.train.stages import STAGES, Example, StageSetup, TrainerContext
from luodi.train.versions import load_model_version, resolve_model


def distill_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, kl, ce) of a batch; logits (batch, seq, vocab), labels (batch, seq) with -100.

    Position t's logits predict token t+1, so KL and CE are taken where `labels[t+1]` is a
    target. Only the first min(vocab) logits are compared (models may pad their vocabulary).
    Student logits longer than the labels (prompt-tuning's virtual tokens) are cut from the left.
    """
    seq = labels.size(1)
    vocab = min(student_logits.size(-1), teacher_logits.size(-1))
    s = student_logits[:, -seq:, :vocab][:, :-1].float()
    t = teacher_logits[:, -seq:, :vocab][:, :-1].float()
    target = labels[:, 1:]
    mask = target != IGNORE
    n = mask.sum().clamp(min=1)
    log_s = F.log_softmax(s / temperature, dim=-1)
    log_t = F.log_softmax(t / temperature, dim=-1)
    kl_per_token = (log_t.exp() * (log_t - log_s)).sum(-1)
    kl = (kl_per_token * mask).sum() / n
    ce = F.cross_entropy(s.reshape(-1, vocab), target.reshape(-1), ignore_index=IGNORE)
    loss = alpha * temperature**2 * kl + (1 - alpha) * ce
    return loss, kl, ce


class DistillTrainer(Trainer):
    """The HF Trainer with the distillation loss against a frozen teacher.

    Logs the KL and cross-entropy terms as `kl` / `ce` (and `eval_kl` / `eval_ce`).
    """

    # The loss is a per-batch mean: the Trainer scales it for gradient accumulation.
    loss_is_scaled_for_ga = False

    def __init__(
        self, *args: Any, teacher: torch.nn.Module, temperature: float, alpha: float, **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        self.teacher = teacher.to(self.args.device)
        self.teacher.eval()
        self.temperature, self.alpha = temperature, alpha
        self._terms: dict[str, dict[str, list[float]]] = {
            "train": defaultdict(list),
            "eval": defaultdict(list),
        }

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        """The distillation loss of one batch (see `distill_loss`)."""
        feed = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
        outputs = model(**feed)
        with torch.no_grad():
            teacher_logits = self.teacher(**feed).logits
        loss, kl, ce = distill_loss(
            outputs.logits, teacher_logits, inputs["labels"], self.temperature, self.alpha
        )
        terms = self._terms["train" if model.training else "eval"]
        terms["kl"].append(float(kl.detach()))
        terms["ce"].append(float(ce.detach()))
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the mean KL and CE since the last log."""
        mode = "train" if self.model.training else "eval"
        prefix = "eval_" if mode == "eval" else ""
        for key, values in self._terms[mode].items():
            if values:
                logs[prefix + key] = sum(values) / len(values)
        self._terms[mode].clear()
        super().log(logs, start_time)


def _resolve_teacher(store: Store, ref: str) -> ArtifactInfo:
    """A model version named `ref`, else a base model (BadInputError when neither exists)."""
    try:
        return resolve_model(store, ref)
    except BadInputError as as_model:
        try:
            return resolve_base(store, ref)
        except BadInputError as as_base:
            raise BadInputError(
                f"teacher {ref!r} is neither a registered model version ({as_model.message}) "
                f"nor a base model ({as_base.message})"
            ) from None


def _texts(records: list[Record]) -> list[str]:
    kind = get_kind("qa" if records and "messages" in records[0] else "text")
    return [t for r in records for t in kind.texts(r) if t]


@dataclass
class DistillStage:
    """distill: text or qa records, loss = KL to the teacher's distribution + data CE."""

    name: str = "distill"
    record_kinds: tuple[str, ...] = ("text", "qa")
    task: Literal["causal", "classify"] = "causal"
    from_scratch: bool = False

    def setup(self, store: Store, cfg: TrainConfig, records: RecordSplit) -> StageSetup:
        """Load the teacher (frozen) and require its tokenizer for the student."""
        if not cfg.teacher:
            raise BadInputError(
                "stage distill needs a teacher: set teacher to a registered model version "
                "(NAME[:vN]) or a base model ('default', 'tiny:<preset>', a path)"
            )
        info = _resolve_teacher(store, cfg.teacher)
        if info.kind == "model":
            if info.meta.get("task") == "classify":
                raise BadInputError(
                    f"teacher {info.ref} is a {info.meta.get('stage')} model (a classifier); "
                    "distill needs a language model as teacher"
                )
            teacher, tokenizer = load_model_version(store, info.ref)
        else:
            is_tiny = info.meta.get("format") == "tiny"
            teacher, tokenizer = load_base(
                info,
                tokenizer_texts=_texts(records.train) if is_tiny else None,
                seed=cfg.seed,
                tiny_vocab_size=cfg.tiny_vocab_size,
            )
        teacher.requires_grad_(False)
        teacher.eval()
        return StageSetup(
            tokenizer=tokenizer,
            parents=[(info, "teacher")],
            meta={
                "teacher": {
                    "ref": info.ref,
                    "kind": info.kind,
                    "temperature": cfg.distill_temperature,
                    "alpha": cfg.distill_alpha,
                }
            },
            state={"teacher": teacher},
        )

    def build_dataset(
        self, records: list[Record], tokenizer: PreTrainedTokenizerBase, cfg: TrainConfig
    ) -> list[Example]:
        """qa records as sft rows (assistant tokens are targets), text records as packed blocks."""
        if records and "messages" in records[0]:
            return SftStage().build_dataset(records, tokenizer, cfg)
        return PretrainStage("distill", from_scratch=False).build_dataset(records, tokenizer, cfg)

    def make_trainer(self, ctx: TrainerContext) -> Trainer:
        """A DistillTrainer against the teacher loaded in `setup`."""
        return DistillTrainer(
            model=ctx.model,
            args=TrainingArguments(**ctx.args, prediction_loss_only=True),
            data_collator=PadCollator(ctx.tokenizer.pad_token_id),
            train_dataset=ExampleDataset(ctx.train),
            eval_dataset=ExampleDataset(ctx.validation) if ctx.validation else None,
            processing_class=ctx.tokenizer,
            callbacks=ctx.callbacks,
            optimizers=(ctx.optimizer, None),
            teacher=ctx.setup.state["teacher"],
            temperature=ctx.cfg.distill_temperature,
            alpha=ctx.cfg.distill_alpha,
        )


STAGES.add("distill", DistillStage())
