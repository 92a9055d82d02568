"""Reading the YAML files users write (suites, gate rules, pipelines, alert rules, configs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from luodi.errors import BadInputError


def read_yaml(path: str | Path, what: str) -> Any:
    """The data in YAML file `path`. A missing or unreadable file, or text that is not YAML, is
    a BadInputError naming `what` (e.g. "suite file") and the path."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"{what} {p} does not exist")
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise BadInputError(f"{what} {p} is not valid YAML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read {what} {p}: {exc}") from None
