"""The one progress callback shape long work reports through.

The CLI renders it with Rich, the API streams it, tests pass nothing.
"""

from __future__ import annotations

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
