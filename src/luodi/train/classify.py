"""classify: a sequence-classification head trained on labeled records.

The label set is the training records' labels, sorted; their indices are the head's outputs and
are stored in the model config (`id2label` / `label2id`) and the version's metadata (`labels`),
so a registered classifier predicts label names on its own. A text is tokenized, cut to
`cutoff_len - 1` tokens and closed with the eos token: a decoder classifies from its last token,
which is then always the same end marker that has seen the whole text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from transformers import EvalPrediction, PreTrainedTokenizerBase, Trainer, TrainingArguments

from luodi.data.records import Record
from luodi.errors import BadInputError
from luodi.store import Store
from luodi.train.config import TrainConfig
from luodi.train.data import IGNORE, ExampleDataset, RecordSplit
from luodi.train.stages import STAGES, Example, StageSetup, TrainerContext


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str, cutoff: int) -> list[int]:
    """Token ids a classifier reads for `text`: at most `cutoff - 1` text tokens, then eos."""
    ids = list(tokenizer(text)["input_ids"])[: cutoff - 1]
    return [*ids, tokenizer.eos_token_id]


def label_set(records: RecordSplit) -> list[str]:
    """The sorted labels of the training records, checked against the validation records.

    BadInputError for records without a label, fewer than two classes, or validation labels
    the training records never show (the head could not predict them).
    """
    missing = sum(1 for r in records.train + records.validation if not r.get("label"))
    if missing:
        raise BadInputError(
            f"{missing} labeled record(s) have no label; drop them or label them before training"
        )
    labels = sorted({str(r["label"]) for r in records.train})
    if len(labels) < 2:
        raise BadInputError(
            f"classification needs at least two labels; the training records only have {labels}"
        )
    unseen = sorted({str(r["label"]) for r in records.validation} - set(labels))
    if unseen:
        raise BadInputError(
            f"validation labels {unseen} never occur in the training records (labels: "
            f"{', '.join(labels)}); add training examples for them or drop them"
        )
    return labels


@dataclass
class ClassifyCollator:
    """Right-pads `input_ids`, masks the padding and maps label names to head indices."""

    pad_id: int
    label2id: dict[str, int]

    def __call__(self, batch: list[Example]) -> dict[str, torch.Tensor]:
        """Stack examples into input_ids / attention_mask / labels tensors."""
        width = max(len(ex["input_ids"]) for ex in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, ex in enumerate(batch):
            n = len(ex["input_ids"])
            ids[i, :n] = torch.tensor(ex["input_ids"], dtype=torch.long)
            mask[i, :n] = 1
        labels = torch.tensor(
            [self.label2id.get(ex["label"], IGNORE) for ex in batch], dtype=torch.long
        )
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def accuracy(pred: EvalPrediction) -> dict[str, float]:
    """Share of validation examples whose highest-scoring class is their label."""
    logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    labels = np.asarray(pred.label_ids)
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def predict(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    *,
    cutoff_len: int = 512,
    batch_size: int = 32,
) -> list[str]:
    """The label name a classifier (e.g. from `load_model_version`) gives each text.

    Texts are encoded as in training (`cutoff_len` should be the training run's).
    """
    id2label = model.config.id2label
    collate = ClassifyCollator(tokenizer.pad_token_id, {})
    out: list[str] = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            rows = [
                {"input_ids": encode_text(tokenizer, t, cutoff_len), "label": ""}
                for t in texts[i : i + batch_size]
            ]
            batch = collate(rows)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            out.extend(id2label[int(k)] for k in logits.logits.argmax(-1))
    return out


@dataclass
class ClassifyStage:
    """classify: labeled records → a sequence classifier over the label set."""

    name: str = "classify"
    record_kinds: tuple[str, ...] = ("labeled",)
    task: Literal["causal", "classify"] = "classify"
    from_scratch: bool = False

    def setup(self, store: Store, cfg: TrainConfig, records: RecordSplit) -> StageSetup:
        """The label set: the head's size and its index ↔ name mapping."""
        labels = label_set(records)
        return StageSetup(
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            meta={"labels": labels},
        )

    def build_dataset(
        self, records: list[Record], tokenizer: PreTrainedTokenizerBase, cfg: TrainConfig
    ) -> list[Example]:
        """Rows of token ids and label name; BadInputError when every text is empty."""
        rows = [
            {"input_ids": encode_text(tokenizer, r["text"], cfg.cutoff_len), "label": r["label"]}
            for r in records
            if (r.get("text") or "").strip()
        ]
        if not rows:
            raise BadInputError(f"all {len(records)} labeled record(s) have empty texts")
        return rows

    def make_trainer(self, ctx: TrainerContext) -> Trainer:
        """The HF Trainer with label-mapping padding and validation accuracy."""
        id2label = ctx.setup.id2label or {}
        collator = ClassifyCollator(
            ctx.tokenizer.pad_token_id, {name: i for i, name in id2label.items()}
        )
        return Trainer(
            model=ctx.model,
            args=TrainingArguments(**ctx.args, label_names=["labels"]),
            data_collator=collator,
            train_dataset=ExampleDataset(ctx.train),
            eval_dataset=ExampleDataset(ctx.validation) if ctx.validation else None,
            processing_class=ctx.tokenizer,
            callbacks=ctx.callbacks,
            optimizers=(ctx.optimizer, None),
            compute_metrics=accuracy,
        )


STAGES.add("classify", ClassifyStage())
