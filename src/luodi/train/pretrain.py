"""Pretraining stages: text records packed into blocks of `cutoff_len` tokens.

`pretrain` starts from freshly initialised weights (the base gives the architecture and the
tokenizer; a `tiny:<preset>` base is built from scratch anyway), `cpt` continues training the
base's own weights. Texts are joined with the eos token between documents and cut into
full blocks, so no padding is trained on; a corpus shorter than one block becomes one block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from transformers import PreTrainedTokenizerBase

from luodi.data.records import Record
from luodi.errors import BadInputError
from luodi.train.config import TrainConfig
from luodi.train.stages import STAGES, Example


def pack_texts(texts: list[str], tokenizer: PreTrainedTokenizerBase, block: int) -> list[Example]:
    """Tokenize `texts`, join them with eos and cut the stream into blocks of `block` tokens.

    The tail shorter than a block is dropped unless it is the only block.
    """
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for text in texts:
        if not text:
            continue
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if eos is not None:
            stream.append(eos)
    if not stream:
        return []
    n_full = len(stream) // block
    blocks = [stream[i * block : (i + 1) * block] for i in range(n_full)]
    if not blocks:
        blocks = [stream]
    return [{"input_ids": b, "labels": list(b)} for b in blocks]


@dataclass
class PretrainStage:
    """pretrain / cpt: next-token prediction on packed text."""

    name: str
    from_scratch: bool
    record_kinds: tuple[str, ...] = ("text",)
    task: Literal["causal", "classify"] = "causal"

    def build_dataset(
        self, records: list[Record], tokenizer: PreTrainedTokenizerBase, cfg: TrainConfig
    ) -> list[Example]:
        """Packed blocks of the records' texts; BadInputError when every text is empty."""
        blocks = pack_texts([r.get("text") or "" for r in records], tokenizer, cfg.cutoff_len)
        if not blocks:
            raise BadInputError(f"all {len(records)} text record(s) are empty")
        return blocks


STAGES.add("pretrain", PretrainStage("pretrain", from_scratch=True))
STAGES.add("cpt", PretrainStage("cpt", from_scratch=False))
