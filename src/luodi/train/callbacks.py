"""Trainer callbacks: progress and metrics to the store, early stopping, graceful Ctrl-C."""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from luodi.progress import Progress, no_progress
from luodi.store.runs import Runs

TASK = "train"
# Seconds between metric writes: a database commit per step would cost more than a tiny step.
FLUSH_EVERY = 2.0

_KEYS = {
    "loss": "loss",
    "learning_rate": "lr",
    "grad_norm": "grad_norm",
    "epoch": "epoch",
    "eval_loss": "eval_loss",
}


class MetricsCallback(TrainerCallback):
    """Reports progress every step and stores logged metrics (loss, lr, tokens/s, eval) per step.

    tokens/s counts non-padding input tokens between two logs over the wall time between them.
    Writes are buffered and flushed every few seconds and when training ends or fails
    (`flush()`), so the metrics of a crashed run are kept up to its last log.
    """

    def __init__(self, runs: Runs, run_id: str, progress: Progress = no_progress) -> None:
        self.runs, self.run_id, self.progress = runs, run_id, progress
        self.pending: dict[int, dict[str, float]] = {}
        self.last: dict[str, float] = {}
        self.history: list[dict[str, float]] = []
        self._flushed = time.monotonic()
        self._tokens = 0
        self._time = time.monotonic()

    def flush(self) -> None:
        """Write buffered metrics to the store."""
        for step, metrics in sorted(self.pending.items()):
            self.runs.log(self.run_id, step, metrics)
        self.pending.clear()
        self._flushed = time.monotonic()

    def _record(self, step: int, metrics: dict[str, float]) -> None:
        self.pending.setdefault(step, {}).update(metrics)
        self.last.update(metrics)
        self.history.append({"step": float(step), **metrics})
        if time.monotonic() - self._flushed >= FLUSH_EVERY:
            self.flush()

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        """Start the progress task at the resumed step (0 for a fresh run)."""
        self._tokens = state.num_input_tokens_seen
        self._time = time.monotonic()
        self.progress(task=TASK, total=state.max_steps, advance=state.global_step)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        """Advance the progress bar by one step with the latest metrics."""
        self.progress(task=TASK, advance=1, metrics=dict(self.last))

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        """Store the Trainer's logged values under luodi's metric names."""
        logs = logs or {}
        metrics = {
            ours: float(logs[theirs])
            for theirs, ours in _KEYS.items()
            if isinstance(logs.get(theirs), int | float)
        }
        if "loss" in metrics:
            now = time.monotonic()
            seen = state.num_input_tokens_seen
            if now > self._time and seen > self._tokens:
                metrics["tokens_per_s"] = (seen - self._tokens) / (now - self._time)
            self._tokens, self._time = seen, now
        if "eval_loss" in metrics:
            metrics["eval_ppl"] = math.exp(min(metrics["eval_loss"], 50.0))
        if metrics:
            self._record(state.global_step, metrics)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        """Write what is still buffered."""
        self.flush()


class EarlyStopping(TrainerCallback):
    """Stops training after `patience` evaluations without a lower validation loss."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best = math.inf
        self.bad = 0
        self.stopped_at: int | None = None

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kw: Any,
    ) -> None:
        """Count evaluations that did not improve on the best loss; stop at `patience`."""
        loss = (metrics or {}).get("eval_loss")
        if loss is None:
            return
        if loss < self.best:
            self.best, self.bad = loss, 0
            return
        self.bad += 1
        if self.bad >= self.patience:
            control.should_training_stop = True
            self.stopped_at = state.global_step


class InterruptCallback(TrainerCallback):
    """Turns a first Ctrl-C into "save a checkpoint after this step and stop".

    A second Ctrl-C raises KeyboardInterrupt at once (the last periodic checkpoint is kept).
    """

    def __init__(self) -> None:
        self.requested = False
        self.step: int | None = None

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        """Save and stop when an interrupt was requested during the step."""
        if self.requested:
            control.should_save = True
            control.should_training_stop = True
            self.step = state.global_step

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Catch SIGINT while training (only possible in the main thread; else a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
