"""The model registry (model versions and their stages) and the small named-parts `Registry`.

`Registry` (families of loaders, operators, ...) is imported eagerly, as before; the stage API
loads on first use so that importing `Registry` does not pull in the metadata store (and
cannot form an import cycle with modules the store may come to use).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from luodi.registry.family import Registry

if TYPE_CHECKING:
    from luodi.registry.stages import (
        STAGES,
        ModelVersionInfo,
        StageChange,
        StageEvent,
        check_stage,
        history,
        resolve_model,
        rollback,
        set_stage,
        stage_of,
        versions,
    )

__all__ = [
    "STAGES",
    "ModelVersionInfo",
    "Registry",
    "StageChange",
    "StageEvent",
    "check_stage",
    "history",
    "resolve_model",
    "rollback",
    "set_stage",
    "stage_of",
    "versions",
]
_STAGE_API = frozenset(__all__) - {"Registry"}


def __getattr__(name: str) -> Any:
    """Load the stage API from `luodi.registry.stages` when one of its names is used."""
    if name in _STAGE_API:
        return getattr(importlib.import_module("luodi.registry.stages"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
