"""The training stages (sft, pretrain, cpt, ...) as a registry of stage objects.

A stage says which record kinds it trains on, which model head it needs, whether it starts from
the base's weights, and how its records become tokenized examples (`input_ids` + `labels`).
Each stage lives in its own module and registers itself here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from transformers import PreTrainedTokenizerBase

from luodi.data.records import Record
from luodi.registry import Registry
from luodi.train.config import TrainConfig

Example = dict[str, list[int]]
"""One tokenized training example: `input_ids` and `labels` (-100 = no loss), equal lengths."""


class Stage(Protocol):
    """What the runner needs from a stage."""

    name: str
    record_kinds: tuple[str, ...]
    task: Literal["causal", "classify"]
    from_scratch: bool
    """True when the base's weights are discarded (its architecture and tokenizer are kept)."""

    def build_dataset(
        self, records: list[Record], tokenizer: PreTrainedTokenizerBase, cfg: TrainConfig
    ) -> list[Example]:
        """Tokenize records into examples; BadInputError when they cannot be trained on."""
        ...


@dataclass
class StageData:
    """The examples a run trains and validates on, with counts for the version's metadata."""

    train: list[Example]
    validation: list[Example]
    info: dict[str, Any]


STAGES: Registry[Stage] = Registry("training stage")


def get_stage(name: str) -> Stage:
    """The stage called `name`, with every stage module imported (they register on import)."""
    import luodi.train.pretrain  # noqa: F401
    import luodi.train.sft  # noqa: F401

    return STAGES.get(name)
