"""Global CLI options and the store they select."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from luodi.config import Settings
from luodi.store import Store


@dataclass
class State:
    """Options of the root command, read by every sub-command."""

    home: Path | None = None
    debug: bool = False
    _store: Store | None = None

    def settings(self) -> Settings:
        """Settings from the environment, with --home applied."""
        return Settings(home=self.home) if self.home else Settings()

    def store(self) -> Store:
        """The metadata store (opened, and migrated, on first use)."""
        if self._store is None:
            self._store = Store(self.settings())
        return self._store


STATE = State()
