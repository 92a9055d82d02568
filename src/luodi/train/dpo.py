"""dpo: direct preference optimisation on preference records with TRL's DPOTrainer.

Each record's prompt becomes a user turn and its chosen / rejected answers assistant turns, so
TRL renders them through the model's chat template (the prompt with the generation prompt, as
chat serves it). The reference model is the base: for full fine-tuning a frozen copy taken
before training (TRL would otherwise try to reload the policy from `config._name_or_path`, which
an in-memory model lacks), for adapters the base with the adapter disabled.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

from transformers import PreTrainedTokenizerBase, Trainer

from luodi.data.records import Record
from luodi.train.config import TrainConfig
from luodi.train.data import check_prompt_lengths, preference_pairs
from luodi.train.sft import prompt_for
from luodi.train.stages import STAGES, Example, TrainerContext


def chat_pair(prompt: str, chosen: str, rejected: str) -> Example:
    """A preference row in TRL's conversational format."""
    return {
        "prompt": [{"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


def trl_args(ctx: TrainerContext, config_cls: Any, **extra: Any) -> Any:
    """A TRL config (DPOConfig, RewardConfig) from the runner's TrainingArguments kwargs.

    TRL defaults that differ from the runner's choices are pinned: no gradient checkpointing
    (slower, and pointless for the models trained here) and bf16 only when asked for.
    """
    args = {
        **ctx.args,
        "gradient_checkpointing": False,
        "bf16": bool(ctx.args.get("bf16", False)),
        "dataset_num_proc": None,
    }
    return config_cls(**args, **extra)


def to_dataset(rows: list[Example]) -> Any:
    """Rows as a `datasets.Dataset` (what TRL trainers take)."""
    from datasets import Dataset

    return Dataset.from_list(rows)


@dataclass
class DpoStage:
    """dpo: preference records → chosen/rejected pairs trained against the base as reference."""

    name: str = "dpo"
    record_kinds: tuple[str, ...] = ("preference",)
    task: Literal["causal", "classify"] = "causal"
    from_scratch: bool = False

    def build_dataset(
        self, records: list[Record], tokenizer: PreTrainedTokenizerBase, cfg: TrainConfig
    ) -> list[Example]:
        """Conversational prompt/chosen/rejected rows; answers longer than cutoff_len are cut.

        BadInputError when no record is a usable pair, or when a rendered prompt does not fit
        in `cutoff_len`.
        """
        pairs = preference_pairs(records)
        lengths = [
            (p.id, len(prompt_for(tokenizer, [{"role": "user", "content": p.prompt}])))
            for p in pairs
        ]
        check_prompt_lengths(lengths, cfg.cutoff_len)
        return [chat_pair(p.prompt, p.chosen, p.rejected) for p in pairs]

    def make_trainer(self, ctx: TrainerContext) -> Trainer:
        """TRL's DPOTrainer with the base as reference (see the module docstring)."""
        from peft import PeftModel
        from trl import DPOConfig, DPOTrainer

        is_peft = isinstance(ctx.model, PeftModel)
        ref_model = None
        if not is_peft:
            ref_model = copy.deepcopy(ctx.model)
            ref_model.requires_grad_(False)
            ref_model.eval()
        args = trl_args(ctx, DPOConfig, beta=ctx.cfg.dpo_beta, max_length=ctx.cfg.cutoff_len)
        trainer = DPOTrainer(
            model=ctx.model,
            ref_model=ref_model,
            args=args,
            train_dataset=to_dataset(ctx.train),
            eval_dataset=to_dataset(ctx.validation) if ctx.validation else None,
            processing_class=ctx.tokenizer,
            callbacks=ctx.callbacks,
            optimizers=(ctx.optimizer, None),
        )
        if is_peft and "ref" in ctx.model.peft_config:
            # TRL copies an already wrapped adapter as the reference. Ours is new, so the base
            # with adapters disabled is the reference DPO means (the model before preference
            # tuning), without a second adapter in every checkpoint and in the version.
            ctx.model.delete_adapter("ref")
        return trainer


STAGES.add("dpo", DpoStage())
