"""Tiny models from scratch: byte-level BPE tokenizer, ChatML masks, presets, chat templates."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from luodi.errors import BadInputError
from luodi.models.chat import (
    CHATML_TEMPLATE,
    chatml_template,
    ensure_chat_template,
    fit_embeddings,
    has_generation_markers,
)
from luodi.models.tiny import (
    MIN_VOCAB,
    PRESETS,
    build_tiny,
    count_parameters,
    train_tokenizer,
)

TEXTS = [
    "企业大模型落地需要高质量的数据。员工手册规定每年有十五天年假。",
    "报销流程：提交发票，部门经理审批，财务部付款。联系电话 010-12345678。",
    "The quick brown fox jumps over the lazy dog. Enterprise LLMs need clean data.",
    "Annual leave is 15 days per year; expenses are approved by the department manager.",
    "def main():\n    print('hello')\n\n\nreturn 0",
] * 8

SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CONVERSATION = [
    {"role": "system", "content": "你是企业助手。"},
    {"role": "user", "content": "年假有几天？"},
    {"role": "assistant", "content": "每年十五天 (15 days)."},
    {"role": "user", "content": "How are expenses approved?"},
    {"role": "assistant", "content": "  By the manager, then 财务部.\n"},
    {"role": "user", "content": "Thanks"},
    {"role": "assistant", "content": "\nYou're welcome!"},
]


@pytest.fixture(scope="module")
def tok() -> PreTrainedTokenizerFast:
    return train_tokenizer(TEXTS, vocab_size=600)


def _chatml(messages: list[dict[str, str]]) -> str:
    """Reference ChatML rendering, written out by hand."""
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)


# -- tokenizer ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "企业大模型落地需要高质量的数据。",
        "未见过的字：龘靐齉爩 and unseen words: zyzzyva",
        "  leading and trailing spaces  ",
        "tabs\tand\r\nwindows newlines\n\n\nand a . b , c ! ?",
        "emoji 😀🚀 math 𝒳 accents café naïve",
        "",
    ],
)
def test_tokenizer_round_trips_any_text(tok: PreTrainedTokenizerFast, text: str) -> None:
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.unk_token_id is None or tok.unk_token_id not in ids


def test_tokenizer_specials_and_size(tok: PreTrainedTokenizerFast) -> None:
    assert tok.eos_token == "<|endoftext|>" and tok.bos_token == "<|endoftext|>"
    assert tok.pad_token == "<|pad|>" and tok.pad_token_id != tok.eos_token_id
    ids = tok.encode("<|im_start|>user\nhi<|im_end|><|endoftext|>")
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")
    assert tok.convert_ids_to_tokens(ids[-2:]) == ["<|im_end|>", "<|endoftext|>"]
    assert tok.decode(ids, skip_special_tokens=True) == "user\nhi"
    assert MIN_VOCAB <= len(tok) <= 600
    # BPE learned merges: common Chinese text takes fewer tokens than its UTF-8 bytes
    text = "企业大模型落地需要高质量的数据。"
    assert len(tok.encode(text)) < len(text.encode()) / 2


def test_tokenizer_is_deterministic() -> None:
    a = train_tokenizer(TEXTS, vocab_size=500)
    b = train_tokenizer(iter(TEXTS), vocab_size=500)  # a one-shot iterator works as well
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()


def test_tokenizer_rejects_bad_input() -> None:
    with pytest.raises(BadInputError, match="at least 260"):
        train_tokenizer(TEXTS, vocab_size=100)
    with pytest.raises(BadInputError, match="empty"):
        train_tokenizer(["", ""], vocab_size=500)


# -- chat template and assistant masks ----------------------------------------------------------


def test_chat_template_renders_chatml(tok: PreTrainedTokenizerFast) -> None:
    text = tok.apply_chat_template(CONVERSATION, tokenize=False)
    assert text == _chatml(CONVERSATION)
    prompt = tok.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True)
    assert prompt == _chatml(CONVERSATION[:2]) + "<|im_start|>assistant\n"


def test_assistant_mask_covers_exactly_assistant_content(tok: PreTrainedTokenizerFast) -> None:
    out = tok.apply_chat_template(
        CONVERSATION, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert len(ids) == len(mask)
    # split the masked tokens into contiguous spans: one per assistant turn
    spans: list[list[int]] = []
    prev = 0
    for i, m in zip(ids, mask, strict=True):
        if m and not prev:
            spans.append([])
        if m:
            spans[-1].append(i)
        prev = m
    assistants = [m["content"] for m in CONVERSATION if m["role"] == "assistant"]
    assert [tok.decode(s) for s in spans] == [c + "<|im_end|>" for c in assistants]
    # and the rest is the prompt: everything else decodes to the other parts of the chat
    unmasked = tok.decode([i for i, m in zip(ids, mask, strict=True) if not m])
    expected_prompt = _chatml(CONVERSATION)
    for c in assistants:
        expected_prompt = expected_prompt.replace(c + "<|im_end|>", "", 1)
    assert unmasked == expected_prompt


def test_ensure_chat_template_keeps_marked_template(tok: PreTrainedTokenizerFast) -> None:
    before = len(tok)
    assert ensure_chat_template(tok) is tok
    assert tok.chat_template == CHATML_TEMPLATE and len(tok) == before


def test_ensure_chat_template_keeps_default_system_prompt() -> None:
    tok = train_tokenizer(TEXTS, vocab_size=400)
    tok.chat_template = SMOLLM2_TEMPLATE
    old = [
        tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
        for conv in (CONVERSATION, CONVERSATION[1:], CONVERSATION[1:2])
        for gen in (False, True)
    ]
    ensure_chat_template(tok)
    assert has_generation_markers(tok.chat_template)
    new = [
        tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
        for conv in (CONVERSATION, CONVERSATION[1:], CONVERSATION[1:2])
        for gen in (False, True)
    ]
    assert new == old  # same prompts as the model was trained with, now with masks
    assert new[2].startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


def test_default_system_prompt_is_quoted_safely(tok: PreTrainedTokenizerFast) -> None:
    system = "It's a \\ 'quoted'\nprompt {{ not jinja }}"
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], chat_template=chatml_template(system), tokenize=False
    )
    assert rendered == _chatml(
        [{"role": "system", "content": system}, {"role": "user", "content": "hi"}]
    )


def test_ensure_chat_template_adds_missing_tokens_and_pad() -> None:
    # a GPT-2 style tokenizer: no ChatML tokens, no pad, no template
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(
        TEXTS,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["</s>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="</s>")
    before = len(tok)
    model = build_tiny("test", tok)
    ensure_chat_template(tok)
    assert len(tok) == before + 2
    assert tok.pad_token == "</s>"
    assert tok.apply_chat_template(CONVERSATION[1:3], tokenize=False) == _chatml(CONVERSATION[1:3])
    ids = tok.encode("<|im_start|>user")
    assert tok.convert_ids_to_tokens(ids[0]) == "<|im_start|>"
    assert fit_embeddings(model, tok) is True
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
    assert model.generation_config.eos_token_id == [
        tok.eos_token_id,
        tok.convert_tokens_to_ids("<|im_end|>"),
    ]
    assert fit_embeddings(model, tok) is False


# -- models -------------------------------------------------------------------------------------


def _expected_llama_params(vocab: int, layers: int, h: int, inter: int) -> int:
    """Llama parameter count by hand: tied embeddings, q/k/v/o, gate/up/down, two norms each."""
    return vocab * h + layers * (4 * h * h + 3 * h * inter + 2 * h) + h


def test_test_preset_parameter_count_is_exact(tok: PreTrainedTokenizerFast) -> None:
    model = build_tiny("test", tok)
    p = PRESETS["test"]
    assert (p.layers, p.hidden, p.heads, p.intermediate) == (2, 64, 4, 128)
    assert count_parameters(model) == _expected_llama_params(len(tok), 2, 64, 128)
    assert model.config.tie_word_embeddings


@pytest.mark.parametrize(("preset", "nominal"), [("1m", 1_000_000), ("5m", 5_000_000)])
def test_preset_sizes_are_close_to_nominal(
    tok: PreTrainedTokenizerFast, preset: str, nominal: int
) -> None:
    model = build_tiny(preset, tok)
    assert 0.6 * nominal <= count_parameters(model) <= 1.4 * nominal


def test_presets_grow() -> None:
    sizes = [
        _expected_llama_params(2000, p.layers, p.hidden, p.intermediate)
        for p in (PRESETS[k] for k in ("test", "1m", "5m", "15m", "30m"))
    ]
    assert sizes == sorted(sizes)
    assert 0.6 * 15e6 <= sizes[3] <= 1.4 * 15e6 and 0.6 * 30e6 <= sizes[4] <= 1.4 * 30e6


def test_build_is_deterministic_and_keeps_global_rng(tok: PreTrainedTokenizerFast) -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = build_tiny("test", tok, seed=7)
    assert torch.equal(torch.rand(3), expected_next)  # global RNG untouched
    b = build_tiny("test", tok, seed=7)
    c = build_tiny("test", tok, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(
        sa["model.layers.0.mlp.up_proj.weight"], sc["model.layers.0.mlp.up_proj.weight"]
    )


def test_causal_model_wiring(tok: PreTrainedTokenizerFast) -> None:
    model = build_tiny("test", tok)
    assert model.config.vocab_size == len(tok)
    assert model.config.pad_token_id == tok.pad_token_id
    assert model.generation_config.eos_token_id == [
        tok.eos_token_id,
        tok.convert_tokens_to_ids("<|im_end|>"),
    ]
    assert tok.model_max_length == PRESETS["test"].max_positions
    batch = tok(["年假有几天？"], return_tensors="pt")
    out = model(**batch, labels=batch["input_ids"])
    assert out.logits.shape == (1, batch["input_ids"].shape[1], len(tok))
    # an untrained model is close to uniform: loss near log(vocab)
    assert abs(out.loss.item() - torch.log(torch.tensor(float(len(tok)))).item()) < 0.5


def test_classifier_ignores_padding(tok: PreTrainedTokenizerFast) -> None:
    model = build_tiny("test", tok, task="classify", num_labels=3, seed=1)
    assert model.config.num_labels == 3
    texts = ["年假有几天？", "How are expenses approved by the manager?"]
    batch = tok(texts, return_tensors="pt", padding=True)
    assert (batch["input_ids"] == tok.pad_token_id).any()
    with torch.no_grad():
        batched = model(**batch).logits
        alone = model(**tok(texts[:1], return_tensors="pt")).logits
    assert batched.shape == (2, 3)
    torch.testing.assert_close(batched[0], alone[0], atol=1e-5, rtol=1e-5)


def test_build_rejects_bad_arguments(tok: PreTrainedTokenizerFast) -> None:
    with pytest.raises(BadInputError, match="num_labels"):
        build_tiny("test", tok, task="classify")
    with pytest.raises(BadInputError, match="known: test, 1m"):
        build_tiny("huge", tok)
    with pytest.raises(BadInputError, match="unknown model task"):
        build_tiny("test", tok, task="regress")  # type: ignore[arg-type]
