"""reward: a scalar reward model on preference records with TRL's RewardTrainer.

The model is a sequence classifier with one output. Prompt and answer are rendered as one
conversation through the chat template and scored from the last token; training pushes the
chosen answer's score above the rejected one's (Bradley-Terry loss, `-log sigmoid(r_c - r_r)`).
Rows are tokenized here, so the same `encode_pair` scores answers after training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from transformers import PreTrainedTokenizerBase, Trainer

from luodi.data.records import Record
from luodi.store import Store
from luodi.train.config import TrainConfig
from luodi.train.data import RecordSplit, check_prompt_lengths, preference_pairs
from luodi.train.dpo import to_dataset, trl_args
from luodi.train.sft import prompt_for
from luodi.train.stages import STAGES, Example, StageSetup, TrainerContext


def encode_pair(
    tokenizer: PreTrainedTokenizerBase, prompt: str, answer: str, cutoff: int
) -> list[int]:
    """Token ids of the conversation (user prompt, assistant answer), at most `cutoff`."""
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
    return list(ids)[:cutoff]


def score(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    pairs: list[tuple[str, str]],
    *,
    cutoff_len: int = 512,
) -> list[float]:
    """The reward a reward model (e.g. from `load_model_version`) gives each (prompt, answer)."""
    out: list[float] = []
    with torch.no_grad():
        for prompt, answer in pairs:
            ids = torch.tensor([encode_pair(tokenizer, prompt, answer, cutoff_len)])
            out.append(float(model(input_ids=ids).logits[0, 0]))
    return out


@dataclass
class RewardStage:
    """reward: preference records → a one-output classifier scoring answers."""

    name: str = "reward"
    record_kinds: tuple[str, ...] = ("preference",)
    task: Literal["causal", "classify"] = "classify"
    from_scratch: bool = False

    def setup(self, store: Store, cfg: TrainConfig, records: RecordSplit) -> StageSetup:
        """A single-output head (the reward)."""
        return StageSetup(num_labels=1, id2label={0: "reward"})

    def build_dataset(
        self, records: list[Record], tokenizer: PreTrainedTokenizerBase, cfg: TrainConfig
    ) -> list[Example]:
        """Tokenized `chosen_ids` / `rejected_ids` rows (answers cut at cutoff_len).

        BadInputError when no record is a usable pair or some prompt does not fit in cutoff_len.
        """
        pairs = preference_pairs(records)
        cutoff = cfg.cutoff_len
        lengths = [
            (p.id, len(prompt_for(tokenizer, [{"role": "user", "content": p.prompt}])))
            for p in pairs
        ]
        check_prompt_lengths(lengths, cutoff)
        return [
            {
                "chosen_ids": encode_pair(tokenizer, p.prompt, p.chosen, cutoff),
                "rejected_ids": encode_pair(tokenizer, p.prompt, p.rejected, cutoff),
            }
            for p in pairs
        ]

    def make_trainer(self, ctx: TrainerContext) -> Trainer:
        """TRL's RewardTrainer on the pre-tokenized pairs."""
        from trl import RewardConfig, RewardTrainer

        args = trl_args(ctx, RewardConfig, max_length=None)
        return RewardTrainer(
            model=ctx.model,
            args=args,
            train_dataset=to_dataset(ctx.train),
            eval_dataset=to_dataset(ctx.validation) if ctx.validation else None,
            processing_class=ctx.tokenizer,
            callbacks=ctx.callbacks,
            optimizers=(ctx.optimizer, None),
        )


STAGES.add("reward", RewardStage())
