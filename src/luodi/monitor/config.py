"""`serve.monitor` of deploy.yaml: the alert rules the gateway checks periodically.

Kept apart from the rest of the package (pydantic only) so the gateway's settings can import
it without the monitoring code."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class MonitorConfig(BaseModel):
    """Alert rules the gateway checks periodically and exposes on /metrics."""

    model_config = ConfigDict(extra="forbid")

    rules: Path = Field(
        description="Alert rules YAML (as for `luodi monitor check --rules`); a relative path "
        "is read from the directory the server starts in."
    )
    interval_s: float = Field(
        default=60.0, gt=0, description="Seconds between checks (the first runs at startup)."
    )
