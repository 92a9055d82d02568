"""The one progress callback shape long work reports through.

The CLI renders it with Rich, the API streams it, tests pass nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol


class Progress(Protocol):
    """Called by long-running work: `total` starts a task, `advance` moves it on."""

    def __call__(
        self,
        *,
        task: str,
        total: int | None = None,
        advance: int = 0,
        message: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None: ...


def no_progress(
    *,
    task: str,
    total: int | None = None,
    advance: int = 0,
    message: str | None = None,
    metrics: dict[str, Any] | None = None,
) -> None:
    """A progress callback that ignores everything (the default)."""


@contextlib.contextmanager
def quiet_hf_bars() -> Iterator[None]:
    """Silence transformers' and datasets' own progress bars for the duration.

    luodi reports progress through its callback (training, eval) or its own output (chat);
    library bars for loading weights or `datasets.map` would only clutter it.
    """
    from datasets.utils import logging as ds_logging
    from transformers.utils import logging as hf_logging

    was, was_ds = hf_logging.is_progress_bar_enabled(), ds_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()
        if was_ds:
            ds_logging.enable_progress_bar()
