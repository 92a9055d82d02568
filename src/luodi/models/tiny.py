"""Tiny Llama models trained from scratch, with a byte-level BPE tokenizer trained on the data.

When no model is at hand (or in tests) luodi builds a small Llama from a preset and a tokenizer
fitted to the user's own texts. Byte-level BPE never meets an unknown character, so any Chinese
or English text round-trips exactly: `tok.decode(tok.encode(s)) == s`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from luodi.errors import BadInputError
from luodi.models.chat import CHATML_TEMPLATE, IM_END, IM_START, fit_embeddings

EOS = "<|endoftext|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = (EOS, PAD, IM_START, IM_END)
BYTE_ALPHABET = 256
MIN_VOCAB = BYTE_ALPHABET + len(SPECIAL_TOKENS)
DEFAULT_MAX_LENGTH = 2048


@dataclass(frozen=True)
class TinyPreset:
    """Shape of a tiny Llama; `nominal` is its approximate size with a ~2k-token vocabulary."""

    layers: int
    hidden: int
    heads: int
    intermediate: int
    kv_heads: int | None = None
    max_positions: int = DEFAULT_MAX_LENGTH
    tie_embeddings: bool = True
    nominal: str = ""

    def config_dict(self) -> dict[str, object]:
        """The preset as plain data (stored in base-model metadata and hashed)."""
        return asdict(self)


PRESETS: dict[str, TinyPreset] = {
    "test": TinyPreset(layers=2, hidden=64, heads=4, intermediate=128, nominal="0.2m"),
    "1m": TinyPreset(layers=4, hidden=128, heads=4, intermediate=384, nominal="1m"),
    "5m": TinyPreset(layers=6, hidden=256, heads=8, intermediate=640, nominal="5m"),
    "15m": TinyPreset(layers=8, hidden=384, heads=6, intermediate=1024, nominal="15m"),
    "30m": TinyPreset(layers=9, hidden=512, heads=8, intermediate=1408, nominal="30m"),
}


def get_preset(name: str) -> TinyPreset:
    """The preset `name`; BadInputError listing the known presets otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(PRESETS)
        raise BadInputError(f"unknown tiny preset {name!r}; known: {known}") from None


def _nonempty(texts: Iterable[str]) -> Iterator[str]:
    for t in texts:
        if not isinstance(t, str):
            raise BadInputError(f"tokenizer texts must be strings, got {type(t).__name__}")
        if t:
            yield t


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 2000,
    *,
    model_max_length: int = DEFAULT_MAX_LENGTH,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `texts` with the ChatML chat template.

    Specials: `<|endoftext|>` (eos and bos), `<|pad|>` (pad), `<|im_start|>`, `<|im_end|>`.
    The vocabulary is at most `vocab_size` (at least 256 bytes + 4 specials; fewer merges when
    the texts run out of pairs). Same texts, same tokenizer. Newlines are split off before the
    byte-level pre-tokenizer so no token spans a newline and the text after it: assistant masks
    computed from character offsets then stop exactly at the ChatML header.
    Raises BadInputError for a too-small vocabulary or no non-empty text.
    """
    if vocab_size < MIN_VOCAB:
        raise BadInputError(
            f"tokenizer vocab_size {vocab_size} is too small: at least {MIN_VOCAB} "
            f"({BYTE_ALPHABET} bytes + {len(SPECIAL_TOKENS)} special tokens)"
        )
    seen = 0

    def counted() -> Iterator[str]:
        nonlocal seen
        for t in _nonempty(texts):
            seen += 1
            yield t

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tk.decoder = decoders.ByteLevel()
    # trim_offsets=False: offsets must cover leading spaces for exact assistant masks.
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(counted(), trainer)
    if seen == 0:
        raise BadInputError("no text to train the tokenizer on: the texts are empty")
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        eos_token=EOS,
        bos_token=EOS,
        pad_token=PAD,
        extra_special_tokens=[IM_START, IM_END],
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
        chat_template=CHATML_TEMPLATE,
    )
    return tok


def tiny_config(
    preset: str,
    tokenizer: PreTrainedTokenizerBase,
    *,
    task: Literal["causal", "classify"] = "causal",
    num_labels: int | None = None,
) -> LlamaConfig:
    """The LlamaConfig of `preset` sized to `tokenizer`, with its special token ids."""
    p = get_preset(preset)
    if p.hidden % p.heads:
        raise BadInputError(f"preset {preset!r}: hidden {p.hidden} not divisible by heads")
    extra: dict[str, object] = {}
    if task == "classify":
        if num_labels is None or num_labels < 1:
            raise BadInputError("a classifier needs num_labels >= 1 (1 = a scalar score)")
        extra["num_labels"] = num_labels
    elif task != "causal":
        raise BadInputError(f"unknown model task {task!r}; known: causal, classify")
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=p.hidden,
        intermediate_size=p.intermediate,
        num_hidden_layers=p.layers,
        num_attention_heads=p.heads,
        num_key_value_heads=p.kv_heads or p.heads,
        max_position_embeddings=p.max_positions,
        tie_word_embeddings=p.tie_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **extra,
    )


def build_tiny(
    preset: str,
    tokenizer: PreTrainedTokenizerBase,
    *,
    task: Literal["causal", "classify"] = "causal",
    num_labels: int | None = None,
    seed: int = 0,
) -> PreTrainedModel:
    """A freshly initialised tiny Llama (causal LM or sequence classifier) for `tokenizer`.

    The weights depend only on (preset, vocabulary size, task, num_labels, seed); the global
    torch RNG is left untouched. Generation stops at eos or `<|im_end|>`; pad_token_id is set
    so classification of padded batches finds the last real token.
    """
    config = tiny_config(preset, tokenizer, task=task, num_labels=num_labels)
    cls = LlamaForSequenceClassification if task == "classify" else LlamaForCausalLM
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(config)
    model.eval()
    fit_embeddings(model, tokenizer)
    if tokenizer.model_max_length > config.max_position_embeddings:
        tokenizer.model_max_length = config.max_position_embeddings
    return model


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())
