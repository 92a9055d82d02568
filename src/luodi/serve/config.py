"""The gateway's settings (`luodi serve --config deploy.yaml`): limits, auth, Redis, deployments.

A deploy.yaml holds a `serve:` section (this model) and a `deployments:` list (DeploymentSpec);
the deployments are applied to the store when the server starts, and afterwards changed with
`luodi deploy apply|promote|rollback` without a restart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from luodi.errors import BadInputError
from luodi.monitor.config import MonitorConfig
from luodi.serve.deployments import DeploymentSpec
from luodi.yamlio import read_yaml


class LimitsConfig(BaseModel):
    """What a single request may ask for; beyond it the client gets a 4xx that says why."""

    model_config = ConfigDict(extra="forbid")

    max_body_bytes: int = Field(
        default=1_000_000, ge=1024, description="Largest request body in bytes (413 beyond)."
    )
    max_upload_bytes: int = Field(
        default=50_000_000,
        ge=1024,
        description="Largest document upload (POST /v1/knowledge-bases/NAME/documents, all "
        "files of one request) in bytes (413 beyond); other requests keep max_body_bytes.",
    )
    max_tokens_cap: int = Field(
        default=2048, ge=1, description="Largest max_tokens a request may ask for (400 beyond)."
    )
    default_max_tokens: int = Field(
        default=256, ge=1, description="max_tokens when a request does not set it."
    )
    max_messages: int = Field(
        default=200, ge=1, description="Most messages in one chat request (400 beyond)."
    )
    max_input_chars: int = Field(
        default=200_000, ge=1, description="Most characters of input text in one request."
    )
    max_n: int = Field(default=8, ge=1, description="Most choices (`n`) in one request.")


class ServeConfig(BaseModel):
    """How the gateway runs."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port to listen on.")
    auth: bool = Field(
        default=True,
        description=(
            "Require an API key (Authorization: Bearer ...) on /v1 and /admin. Turn off only on "
            "a trusted single-user machine: every caller is then an admin of team 'default'."
        ),
    )
    redis_url: str | None = Field(
        default=None,
        description=(
            "Redis URL for rate limits shared by several gateway replicas, e.g. "
            "redis://127.0.0.1:6379/0. Default: limits kept in this process."
        ),
    )
    limits: LimitsConfig = Field(default_factory=LimitsConfig, description="Request limits.")
    label_text: bool = Field(
        default=False,
        description=(
            "Also append an AI-generated label to the reply text (the `luodi.ai_generated` "
            "response field is always set)."
        ),
    )
    label: str = Field(
        default="【本内容由人工智能生成 / AI-generated】",
        description="The label appended to replies when label_text is on.",
    )
    log_retention_days: int = Field(
        default=30, ge=1, description="Request logs older than this are deleted."
    )
    reload_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="How often the server looks for deployment changes in the store.",
    )
    monitor: MonitorConfig | None = Field(
        default=None,
        description="Alert rules to check periodically; their state is shown on /metrics.",
    )


class DeployFile(BaseModel):
    """A deploy.yaml: server settings and the deployments to apply."""

    model_config = ConfigDict(extra="forbid")

    serve: ServeConfig = Field(default_factory=ServeConfig, description="Server settings.")
    deployments: list[DeploymentSpec] = Field(
        default_factory=list, description="Deployments applied when the server starts."
    )


def _read_yaml(path: Path) -> Any:
    return read_yaml(path, "config file") or {}


def validation_message(exc: ValidationError) -> str:
    """One line per problem: `field.path: message`."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
    )


def load_deploy_file(path: Path) -> DeployFile:
    """Parse and validate a deploy.yaml; BadInputError naming each bad field."""
    raw = _read_yaml(path)
    if isinstance(raw, dict) and "serve" not in raw and "deployments" not in raw and "name" in raw:
        raw = {"deployments": [raw]}  # a file holding one deployment
    try:
        return DeployFile.model_validate(raw)
    except ValidationError as exc:
        raise BadInputError(f"{path}: {validation_message(exc)}") from None
