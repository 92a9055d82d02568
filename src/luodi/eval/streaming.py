"""Streamed replies for eval targets: the TokenStream a target's `stream` returns, and the
machinery that streams a local model's `generate` token by token.

A local model generates in a worker thread; a transformers streamer hands each new token id
to the consuming thread through a queue, and a stopping criterion ends generation at the next
token once the consumer stops reading (closing the stream, or leaving a for loop early).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer


class TokenStream:
    """One reply, piece by piece as it is generated; iterate it to get the text pieces.

    `completion_tokens` counts the tokens generated so far (final once the iteration ends);
    `exact` is False when an endpoint did not report its token usage and the count is the
    number of streamed chunks instead. Closing the stream early (`close()`, or leaving a for
    loop and dropping it) stops generation.
    """

    def __init__(self, produce: Callable[[TokenStream], Iterator[str]]) -> None:
        self.completion_tokens = 0
        self.exact = True
        self._it = produce(self)

    def __iter__(self) -> TokenStream:
        return self

    def __next__(self) -> str:
        return next(self._it)

    def close(self) -> None:
        """Stop the generation (the producer's cleanup runs)."""
        close = getattr(self._it, "close", None)
        if close is not None:
            close()


class _TokenQueue(BaseStreamer):
    """Hands each generated token id (batch of one) to the consuming thread via a queue."""

    def __init__(self) -> None:
        self.queue: queue.Queue[list[int] | None] = queue.Queue()
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        """The first call carries the prompt (skipped); each later one the new token(s)."""
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.queue.put([int(x) for x in value.reshape(-1).tolist()])

    def end(self) -> None:
        """Generation is over (or failed): wake the consumer."""
        self.queue.put(None)


class _Stop(StoppingCriteria):
    """Stops generation at the next token once the event is set (the stream was closed)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **_: Any) -> Any:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)


def stream_generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    generate_kwargs: dict[str, Any],
    *,
    seed: int,
    fail: Callable[[BaseException], Exception],
) -> TokenStream:
    """`model.generate(**generate_kwargs)` (one row, no streamer of its own) as a TokenStream
    yielding one decoded piece per generated token.

    A piece is empty while a token ends inside a multi-byte character (the character is held
    back until its last byte arrives) or for a special token; the pieces joined equal the
    decoded reply. PyTorch is seeded with `seed` just before generation starts. An exception
    in generation is raised as `fail(exc)` after the pieces already produced.
    """

    def produce(out: TokenStream) -> Iterator[str]:
        streamer, stop = _TokenQueue(), threading.Event()
        kwargs = {
            **generate_kwargs,
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([_Stop(stop)]),
        }
        errors: list[BaseException] = []

        def work() -> None:
            try:
                with torch.inference_mode():
                    model.generate(**kwargs)
            except BaseException as exc:  # reported in the consumer's thread
                errors.append(exc)
                streamer.end()

        torch.manual_seed(seed)
        thread = threading.Thread(target=work, name="luodi-eval-stream", daemon=True)
        thread.start()
        got: list[int] = []
        shown = ""
        try:
            while (step := streamer.queue.get()) is not None:
                got += step
                out.completion_tokens += len(step)
                # Decode the whole reply so far: a character split over two tokens shows as
                # U+FFFD until its last byte arrives, so it is held back until then.
                whole = tokenizer.decode(got, skip_special_tokens=True)
                ready = whole.rstrip("\ufffd")
                piece = ready[len(shown) :] if ready.startswith(shown) else ""
                shown += piece
                yield piece
            whole = tokenizer.decode(got, skip_special_tokens=True)
            if whole.startswith(shown) and len(whole) > len(shown):
                yield whole[len(shown) :]
        finally:
            stop.set()  # a consumer that stopped early ends generation at the next token
            thread.join()
        if errors:
            raise fail(errors[0]) from errors[0]

    return TokenStream(produce)
