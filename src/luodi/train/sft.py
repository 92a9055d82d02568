"""Supervised fine-tuning: qa conversations through the chat template, loss on assistant tokens.

Each conversation is rendered with the tokenizer's chat template; the template's
`{% generation %}` blocks mark what the assistant wrote (its content and the closing
`<|im_end|>`), and only those tokens get a label. Multi-turn conversations train on every
assistant turn. A conversation whose prompt (everything before the first assistant token) does
not fit in `cutoff_len` is an error: truncating it would train on answers to a question the
model never sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from transformers import PreTrainedTokenizerBase

from luodi.data.records import Record
from luodi.errors import BadInputError
from luodi.models.chat import has_generation_markers, stop_token_ids
from luodi.train.config import TrainConfig
from luodi.train.stages import STAGES, Example

IGNORE = -100


def _messages(rec: Record) -> list[dict[str, str]]:
    return [
        {"role": m.get("role") or "user", "content": m.get("content") or ""}
        for m in rec.get("messages") or []
    ]


def _mask_by_prefixes(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]
) -> tuple[list[int], list[int]]:
    """Assistant mask for templates without generation markers: diff successive renderings."""
    ids: list[int] = list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False))
    mask = [0] * len(ids)
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(
            messages[:i], tokenize=True, add_generation_prompt=True, return_dict=False
        )
        upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=True, return_dict=False)
        for j in range(len(before), min(len(upto), len(ids))):
            mask[j] = 1
    return ids, mask


def encode_conversation(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]
) -> tuple[list[int], list[int]]:
    """Token ids of a rendered conversation and their labels (-100 except assistant tokens).

    Assistant tokens are the template's generation blocks; an end-of-turn token (eos or
    `<|im_end|>`) right after a block is a target too, so the model learns to stop even with
    templates that leave it outside the block.
    """
    if has_generation_markers(getattr(tokenizer, "chat_template", None)):
        enc = tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        ids, mask = list(enc["input_ids"]), list(enc["assistant_masks"])
    else:
        ids, mask = _mask_by_prefixes(tokenizer, messages)
    stops = set(stop_token_ids(tokenizer))
    for j in range(len(ids) - 1):
        if mask[j] and not mask[j + 1] and ids[j + 1] in stops:
            mask[j + 1] = 1
    labels = [t if m else IGNORE for t, m in zip(ids, mask, strict=True)]
    return ids, labels


def prompt_for(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of the prompt a model answers: the conversation before its last assistant turn
    plus the generation prompt (what chat and the memorisation tests feed the model)."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    context = messages if last is None else messages[:last]
    return list(
        tokenizer.apply_chat_template(
            context, tokenize=True, add_generation_prompt=True, return_dict=False
        )
    )


@dataclass
class SftStage:
    """sft: qa records → chat-templated examples with assistant-only labels."""

    name: str = "sft"
    record_kinds: tuple[str, ...] = ("qa",)
    task: Literal["causal", "classify"] = "causal"
    from_scratch: bool = False

    def build_dataset(
        self, records: list[Record], tokenizer: PreTrainedTokenizerBase, cfg: TrainConfig
    ) -> list[Example]:
        """Examples for every conversation with an assistant turn, truncated to cutoff_len.

        Raises BadInputError when no record has an assistant reply, or when some prompt is
        longer than `cutoff_len` (naming how many and the cutoff that would fit them).
        """
        cutoff = cfg.cutoff_len
        out: list[Example] = []
        too_long: list[tuple[str, int]] = []
        no_answer = 0
        for rec in records:
            messages = _messages(rec)
            if not any(m["role"] == "assistant" and m["content"] for m in messages):
                no_answer += 1
                continue
            ids, labels = encode_conversation(tokenizer, messages)
            first = next((i for i, lab in enumerate(labels) if lab != IGNORE), None)
            if first is None:
                no_answer += 1
                continue
            if first >= cutoff:
                too_long.append((rec.get("id") or "?", first))
                continue
            out.append({"input_ids": ids[:cutoff], "labels": labels[:cutoff]})
        if too_long:
            worst = max(n for _, n in too_long)
            raise BadInputError(
                f"cutoff_len {cutoff} is shorter than the prompt of {len(too_long)} "
                f"conversation(s) (e.g. record {too_long[0][0]}: {too_long[0][1]} tokens before "
                f"the first answer); set cutoff_len above {worst} or shorten those prompts"
            )
        if not out:
            raise BadInputError(
                f"none of the {len(records)} conversation(s) has an assistant reply to train on"
            )
        return out


STAGES.add("sft", SftStage())
