"""Recipes: a YAML list of named operators with their parameters.

```yaml
# luodi data clean NAME --recipe recipe.yaml
operators:
  - op: normalize_unicode
  - op: pii_mask
    allow: ["400-820-8820"]
```
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from luodi.data.ops.base import OPERATORS, Operator
from luodi.data.records import RecordKind
from luodi.errors import BadInputError, NotFoundError

RECIPES = Path(__file__).parent.parent / "recipes"


def load_builtin_operators() -> None:
    """Import every module of this package so each operator registers itself."""
    pkg = Path(__file__).parent
    for mod in pkgutil.iter_modules([str(pkg)]):
        if mod.name not in {"base", "recipe"}:
            importlib.import_module(f"luodi.data.ops.{mod.name}")


class Recipe(BaseModel):
    """A cleaning recipe: operators applied in order, each `{op: NAME, **params}`."""

    model_config = ConfigDict(extra="forbid")

    operators: list[dict[str, Any]] = Field(
        description="Operators in order; each a mapping with `op` (the name) and its parameters."
    )

    def build(self, kind: RecordKind) -> list[Operator]:
        """Instantiate and bind the operators for records of `kind`; errors name the step."""
        load_builtin_operators()
        ops: list[Operator] = []
        for i, spec in enumerate(self.operators, 1):
            spec = dict(spec)
            name = spec.pop("op", None)
            if not isinstance(name, str):
                raise BadInputError(f"recipe step {i}: missing `op: NAME`")
            cls = OPERATORS.get(name)
            if kind.name not in cls.kinds:
                raise BadInputError(
                    f"recipe step {i}: operator {name!r} does not apply to {kind.name} records "
                    f"(it applies to: {', '.join(cls.kinds)})"
                )
            try:
                op = cls(**spec)
            except ValidationError as exc:
                errs = "; ".join(
                    f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
                )
                raise BadInputError(f"recipe step {i} ({name}): {errs}") from None
            ops.append(op.bind(kind))
        return ops

    def to_yaml(self) -> str:
        """The recipe as YAML (what the dataset manifest records)."""
        return yaml.safe_dump(self.model_dump(), allow_unicode=True, sort_keys=False)


def load_recipe(path: Path) -> Recipe:
    """Read a recipe YAML file; unreadable files and unknown keys are bad input."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(f"recipe file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise BadInputError(f"recipe {path} is not valid YAML: {exc}") from None
    if isinstance(data, list):
        data = {"operators": data}
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise BadInputError(f"recipe {path}: {exc.errors()[0]['msg']}") from None


def default_recipe(kind: str) -> Recipe:
    """The built-in recipe for a record kind (src/luodi/data/recipes/<kind>.yaml)."""
    return load_recipe(RECIPES / f"{kind}.yaml")
