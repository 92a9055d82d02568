"""The training stages (sft, pretrain, cpt, dpo, reward, classify, distill) as a registry.

A stage says which record kinds it trains on, which model head it needs, whether it starts from
the base's weights, and how its records become training rows. Each stage lives in its own
module and registers itself here.

Two optional hooks let a stage go beyond next-token prediction with the HF Trainer:

- `setup(store, cfg, records) -> StageSetup`, called before the base is loaded: what the run
  needs besides the base and the data (a classifier's labels, a teacher model, extra lineage
  parents and version metadata). It raises BadInputError for anything wrong, before training.
- `make_trainer(ctx: TrainerContext) -> transformers.Trainer`: the stage builds its own trainer
  (a TRL trainer, or a Trainer subclass with its own loss) from everything the runner prepared.

Stages without them get `StageSetup()` and the runner's plain Trainer over padded
`input_ids`/`labels` rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback

from luodi.data.records import Record
from luodi.registry import Registry
from luodi.train.config import TrainConfig

if TYPE_CHECKING:
    import torch

    from luodi.store import ArtifactInfo, Store
    from luodi.train.data import RecordSplit

Example = dict[str, Any]
"""One training row. For the default trainer: `input_ids` and `labels` (-100 = no loss), equal
lengths. Stages with their own trainer define their rows (e.g. dpo: chat-format `prompt`,
`chosen`, `rejected`; classify: `input_ids` and a `label` string)."""


@dataclass
class StageSetup:
    """What a stage adds to a run before the base model is loaded."""

    num_labels: int | None = None
    """Outputs of the classification head (stages whose task is "classify")."""
    id2label: dict[int, str] | None = None
    """Class names by head index, stored in the model config and the version's metadata."""
    tokenizer: PreTrainedTokenizerBase | None = None
    """A tokenizer the run must use: a tiny base is built on it, any other base must have the
    same vocabulary (BadInputError otherwise). distill: the teacher's."""
    parents: list[tuple[ArtifactInfo, str]] = field(default_factory=list)
    """Extra lineage parents of the registered version, as (artifact, role)."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Merged into the registered version's metadata."""
    state: dict[str, Any] = field(default_factory=dict)
    """Objects the stage's trainer needs (e.g. the loaded teacher model)."""


@dataclass
class TrainerContext:
    """Everything the runner prepared, for a stage that builds its own trainer."""

    cfg: TrainConfig
    model: torch.nn.Module
    """The model to train, already wrapped by the method (a PeftModel for adapters)."""
    tokenizer: PreTrainedTokenizerBase
    train: list[Example]
    validation: list[Example]
    args: dict[str, Any]
    """TrainingArguments keyword arguments (a TRL config class accepts them too)."""
    callbacks: list[TrainerCallback]
    optimizer: torch.optim.Optimizer | None
    """The method's own optimizer (LoRA+), None to let the Trainer build the configured one."""
    setup: StageSetup


class Stage(Protocol):
    """What the runner needs from a stage (plus the optional `setup` / `make_trainer` hooks
    described in the module docstring)."""

    name: str
    record_kinds: tuple[str, ...]
    task: Literal["causal", "classify"]
    from_scratch: bool
    """True when the base's weights are discarded (its architecture and tokenizer are kept)."""

    def build_dataset(
        self, records: list[Record], tokenizer: PreTrainedTokenizerBase, cfg: TrainConfig
    ) -> list[Example]:
        """Turn records into training rows; BadInputError when they cannot be trained on."""
        ...


def stage_setup(stage: Stage, store: Store, cfg: TrainConfig, records: RecordSplit) -> StageSetup:
    """The stage's `setup` result, or an empty StageSetup for stages without the hook."""
    hook = getattr(stage, "setup", None)
    return hook(store, cfg, records) if hook is not None else StageSetup()


def custom_trainer(stage: Stage, ctx: TrainerContext) -> Trainer | None:
    """The stage's own trainer (its `make_trainer` hook), or None for the default Trainer."""
    hook = getattr(stage, "make_trainer", None)
    return hook(ctx) if hook is not None else None


def has_custom_trainer(stage: Stage) -> bool:
    """Whether the stage builds its own trainer (its loss is then not a plain LM loss)."""
    return getattr(stage, "make_trainer", None) is not None


STAGES: Registry[Stage] = Registry("training stage")


def get_stage(name: str) -> Stage:
    """The stage called `name`, with every stage module imported (they register on import)."""
    import luodi.train.classify  # noqa: F401
    import luodi.train.distill  # noqa: F401
    import luodi.train.dpo  # noqa: F401
    import luodi.train.pretrain  # noqa: F401
    import luodi.train.reward  # noqa: F401
    import luodi.train.sft  # noqa: F401

    return STAGES.get(name)
