"""Small helpers shared by the loaders."""

from __future__ import annotations


def short_error(exc: BaseException, limit: int = 200) -> str:
    """A one-line description of `exc` for a rejection reason: "TypeName: first line"."""
    lines = str(exc).strip().splitlines()
    name = type(exc).__name__
    return f"{name}: {lines[0][:limit]}" if lines else name
