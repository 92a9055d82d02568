"""Settings shared by every stage: where luodi keeps its metadata and artifacts."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """luodi's settings, read from `LUODI_*` environment variables (or passed explicitly)."""

    model_config = SettingsConfigDict(env_prefix="LUODI_", extra="forbid")

    home: Path = Field(
        default=Path(".luodi"),
        description="Folder holding the default SQLite database and artifact root.",
    )
    database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the metadata store, e.g. postgresql+psycopg://user@host/db. "
            "Default: a SQLite file luodi.db inside the home folder."
        ),
    )
    artifact_root: Path | None = Field(
        default=None,
        description="Folder where versioned artifacts are stored. Default: <home>/artifacts.",
    )
    user: str | None = Field(
        default=None,
        description="Name recorded as created_by on new artifacts. Default: the OS user.",
    )

    @property
    def db_url(self) -> str:
        """The effective database URL (SQLite in the home folder unless configured)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'luodi.db').resolve()}"

    @property
    def artifacts(self) -> Path:
        """The effective artifact root folder."""
        return (self.artifact_root or self.home / "artifacts").resolve()

    @property
    def username(self) -> str:
        """Who is recorded as the creator of new artifacts."""
        if self.user:
            return self.user
        import getpass

        try:
            return getpass.getuser()
        except Exception:  # no passwd entry in some containers
            return "unknown"
