"""Chat with a model version or base model: history, the chat template, streamed replies.

`ChatSession.send(text)` yields the reply as it is generated: `model.generate` runs in a
worker thread feeding a transformers `TextIteratorStreamer`, and the caller (the terminal
chat, later the API) consumes text pieces as they arrive. A reply joins the history only when
it was generated to its end; a cancelled or abandoned one leaves the history as it was.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import torch
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)

from luodi.errors import BadInputError, LuodiError, StageFailedError
from luodi.models.chat import ensure_chat_template, fit_embeddings, stop_token_ids
from luodi.progress import quiet_hf_bars
from luodi.store import Store

Message = dict[str, str]
# The share of the context kept free for the reply when old turns must be dropped.
_REPLY_SHARE = 4


class _Cancelled(StoppingCriteria):
    """Stops generation at the next token once the event is set (Ctrl-C, abandoned reply)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **_: Any) -> Any:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)


class ChatSession:
    """A conversation with one causal LM: system prompt, history and sampling settings.

    `temperature` 0 decodes greedily (the same reply every time); above 0 samples with
    `top_p` nucleus filtering, from `seed` when given. `max_context` (default: the model's
    maximum positions) bounds prompt + reply; the oldest turns are dropped to fit.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        system: str | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.7,
        top_p: float = 0.9,
        seed: int | None = None,
        max_context: int | None = None,
        ref: str | None = None,
    ) -> None:
        if max_new_tokens < 1:
            raise BadInputError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        if temperature < 0:
            raise BadInputError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        if not 0 < top_p <= 1:
            raise BadInputError(f"top_p must be in (0, 1], got {top_p}")
        self.model = model
        self.tokenizer = ensure_chat_template(tokenizer)
        if not hasattr(model, "peft_config"):  # a PeftModel's embeddings already fit
            fit_embeddings(model, self.tokenizer)
        self.system = system
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.ref = ref
        limit = max_context or getattr(model.config, "max_position_embeddings", None)
        self.max_context: int | None = int(limit) if limit else None
        self.history: list[Message] = []
        self._cancel = threading.Event()

    def reset(self) -> None:
        """Forget the conversation (the system prompt stays)."""
        self.history = []

    def cancel(self) -> None:
        """Stop the reply being generated at its next token; it is not added to the history."""
        self._cancel.set()

    def _encode(self, messages: list[Message]) -> list[int]:
        ids = self.tokenizer.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=True, return_dict=False
        )
        return list(ids)

    def prompt_ids(self, text: str) -> list[int]:
        """Token ids of the prompt for user message `text`: system, history, text, and the
        assistant header. Oldest turns are left out when the prompt would leave less than the
        reply's room (max_new_tokens, at most a quarter of max_context); a message that does
        not fit even alone is a BadInputError."""
        head: list[Message] = [{"role": "system", "content": self.system}] if self.system else []
        turns = list(self.history)
        user: Message = {"role": "user", "content": text}
        while True:
            ids = self._encode([*head, *turns, user])
            if self.max_context is None:
                return ids
            room = min(self.max_new_tokens, max(1, self.max_context // _REPLY_SHARE))
            if len(ids) + room <= self.max_context:
                return ids
            if not turns:
                raise BadInputError(
                    f"the message is too long: its prompt has {len(ids)} tokens and the model "
                    f"takes {self.max_context} in all, {room} of them kept for the reply"
                )
            # Drop the oldest exchange: a user turn and the replies after it.
            cut = next((i for i in range(1, len(turns)) if turns[i]["role"] == "user"), len(turns))
            turns = turns[cut:]

    def _generate_kwargs(self, ids: list[int], streamer: TextIteratorStreamer) -> dict[str, Any]:
        input_ids = torch.tensor([ids], device=self.model.device)
        max_new = self.max_new_tokens
        if self.max_context is not None:
            max_new = max(1, min(max_new, self.max_context - len(ids)))
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p}
            if self.temperature > 0
            # Explicit, so a model's own sampling defaults cannot turn greedy decoding random.
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        )
        return {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "max_new_tokens": max_new,
            "eos_token_id": stop_token_ids(self.tokenizer) or None,
            "pad_token_id": self.tokenizer.pad_token_id,
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([_Cancelled(self._cancel)]),
            **sampling,
        }

    def send(self, text: str) -> Iterator[str]:
        """Stream the reply to user message `text`, piece by piece, as it is generated.

        When the iteration completes, the message and the whole reply join the history. If
        the caller stops early (or calls `cancel`, or Ctrl-C lands while waiting), generation
        stops at its next token and the history is unchanged. A failure inside generation is
        raised as StageFailedError after the pieces already produced.
        """
        if not text.strip():
            raise BadInputError("empty message")
        ids = self.prompt_ids(text)
        self._cancel.clear()
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = self._generate_kwargs(ids, streamer)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(**kwargs)
            except BaseException as exc:  # reported in the caller's thread
                errors.append(exc)
                streamer.end()  # unblock the reader

        if self.seed is not None:
            torch.manual_seed(self.seed)
        thread = threading.Thread(target=work, name="luodi-chat-generate", daemon=True)
        pieces: list[str] = []
        finished = False
        thread.start()
        try:
            for piece in streamer:
                if piece:
                    pieces.append(piece)
                    yield piece
            finished = True
        finally:
            if not finished:
                self._cancel.set()
            thread.join()
        if errors:
            exc = errors[0]
            reason = exc.message if isinstance(exc, LuodiError) else f"{type(exc).__name__}: {exc}"
            raise StageFailedError(f"generation failed: {reason}") from exc
        if self._cancel.is_set():
            return
        self.history += [
            {"role": "user", "content": text},
            {"role": "assistant", "content": "".join(pieces).strip()},
        ]

    def ask(self, text: str) -> str:
        """The whole reply to `text` (send, joined), stripped of surrounding whitespace."""
        return "".join(self.send(text)).strip()


def load_chat_model(store: Store, ref: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    """(model, tokenizer, resolved ref) for a model version or a base model reference.

    `ref` is a model version (NAME, NAME:vN, NAME@STAGE) or, failing that, a base model
    (default, a registered base name[:vN], an HF folder or GGUF path). NotFoundError naming
    the known models and bases when it is neither; BadInputError for a tiny base (it has no
    tokenizer until trained: chat with a version trained from it).
    """
    from luodi.models.loading import load_base
    from luodi.registry.stages import resolve_model_or_base
    from luodi.train.versions import load_model_version

    info = resolve_model_or_base(store, ref)
    if info.kind == "model":
        with quiet_hf_bars():
            model, tokenizer = load_model_version(store, info.ref)
        return model, tokenizer, info.ref
    base = info
    if base.meta.get("format") == "tiny":
        raise BadInputError(
            f"{base.ref} is an untrained tiny model whose tokenizer is trained with it; chat "
            "with a model version trained from it (luodi models list)"
        )
    with quiet_hf_bars():
        model, tokenizer = load_base(base)
    return model, tokenizer, base.ref


def open_chat(store: Store, ref: str, **settings: Any) -> ChatSession:
    """A ChatSession with the model `ref` names (see load_chat_model); `settings` are
    ChatSession's keyword arguments (system, max_new_tokens, temperature, top_p, seed,
    max_context)."""
    model, tokenizer, resolved = load_chat_model(store, ref)
    return ChatSession(model, tokenizer, ref=resolved, **settings)


__all__ = ["ChatSession", "load_chat_model", "open_chat"]
