"""Chat templates: ChatML with `{% generation %}` markers so assistant tokens can be masked.

Training on conversations needs to know which tokens the assistant wrote (only those get a
loss). transformers computes that mask from `{% generation %}...{% endgeneration %}` blocks in
the chat template, which most shipped templates lack; `ensure_chat_template` installs a ChatML
template that has them, keeping the model's own default system prompt when it had one.
"""

from __future__ import annotations

import re

from transformers import PreTrainedModel, PreTrainedTokenizerBase

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
CHAT_TOKENS = (IM_START, IM_END)

_GENERATION = re.compile(r"\{%-?\s*generation\s*-?%\}")

# The assistant block covers the content and the closing <|im_end|>: the model must learn to
# stop, so the end marker is a target too; the header and the newline after it are prompt.
_DEFAULT_SYSTEM_BLOCK = (
    "{%- if messages[0]['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\n' + default_system + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
)
_BODY = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{- message['content'] + '<|im_end|>' -}}{% endgeneration %}"
    "{%- else -%}"
    "{{- message['content'] + '<|im_end|>' -}}"
    "{%- endif -%}"
    "{{- '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

CHATML_TEMPLATE = _BODY


def chatml_template(default_system: str | None = None) -> str:
    """The ChatML template; with `default_system`, conversations without a system message get it.

    The system text is embedded as a Jinja string literal, so any characters are safe.
    """
    if not default_system:
        return CHATML_TEMPLATE
    literal = default_system.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return "{%- set default_system = '" + literal + "' -%}" + _DEFAULT_SYSTEM_BLOCK + _BODY


def has_generation_markers(template: str | None) -> bool:
    """Whether a chat template marks assistant content with `{% generation %}`."""
    return bool(template and _GENERATION.search(template))


def _default_system_prompt(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """The system prompt the tokenizer's current ChatML-like template adds on its own, if any.

    Rendering a conversation without a system message and finding a ChatML system block in
    front of it is the only reliable way to read it out of an arbitrary template.
    """
    template = getattr(tokenizer, "chat_template", None)
    if not template or IM_START not in template:
        return None
    probe = "\u2063probe\u2063"
    try:
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": probe}], tokenize=False
        )
    except Exception:  # a template that needs extra variables: no default to keep
        return None
    if not isinstance(rendered, str):
        return None
    m = re.match(
        re.escape(IM_START) + r"system\n(.*?)" + re.escape(IM_END) + r"\n" + re.escape(IM_START),
        rendered.lstrip(),
        re.S,
    )
    if m is None or probe in m.group(1):
        return None
    return m.group(1)


def ensure_chat_template(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Give `tokenizer` a chat template with generation markers and a pad token, in place.

    A template that already has `{% generation %}` is kept as is. Otherwise the ChatML template
    replaces it (keeping the default system prompt the old template inserted, if any), and
    `<|im_start|>` / `<|im_end|>` are added as special tokens when the vocabulary lacks them.
    A missing pad token becomes the eos token, or a new `<|pad|>` when there is no eos either.
    Returns the same tokenizer. When tokens were added, `len(tokenizer)` exceeds the model's
    embedding rows: call `fit_embeddings(model, tokenizer)` (load_base does).
    """
    if not has_generation_markers(getattr(tokenizer, "chat_template", None)):
        default_system = _default_system_prompt(tokenizer)
        vocab = tokenizer.get_vocab()
        missing = [t for t in CHAT_TOKENS if t not in vocab]
        specials = set(tokenizer.all_special_tokens)
        unmarked = [t for t in CHAT_TOKENS if t in vocab and t not in specials]
        if missing or unmarked:
            # Marking them special keeps them whole and lets decode(skip_special_tokens) drop them.
            tokenizer.add_special_tokens(
                {"extra_special_tokens": missing + unmarked}, replace_extra_special_tokens=False
            )
        tokenizer.chat_template = chatml_template(default_system)
    if tokenizer.eos_token is None:
        tokenizer.eos_token = IM_END
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        else:
            tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
    return tokenizer


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Token ids that end a reply: the eos token and `<|im_end|>` (once each, eos first)."""
    ids: list[int] = []
    for tok in (tokenizer.eos_token, IM_END):
        if tok is None:
            continue
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid not in ids:
            ids.append(tid)
    return ids


def fit_embeddings(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> bool:
    """Grow the model's token embeddings to the tokenizer's size; True when they were resized.

    Also points the model's pad id at the tokenizer's and makes generation stop at `<|im_end|>`
    as well as eos, so chat replies end where the template says they do.
    """
    resized = False
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        model.resize_token_embeddings(len(tokenizer))
        resized = True
    model.config.pad_token_id = tokenizer.pad_token_id
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        stops = stop_token_ids(tokenizer)
        if stops:
            gen.eos_token_id = stops if len(stops) > 1 else stops[0]
        gen.pad_token_id = tokenizer.pad_token_id
    return resized
