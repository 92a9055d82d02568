"""Pipeline files: a named DAG of stages, each one of luodi's stage functions with its config.

    # luodi pipeline run pipeline.yaml
    name: faq-bot
    stages:
      - id: faq
        uses: ingest
        with: {paths: [data/faq.csv], kind: qa, name: faq}
      - id: clean
        uses: clean
        with: {dataset: "${{ steps.faq.output }}"}
      - id: train
        uses: train
        with: {stage: sft, dataset: "${{ steps.clean.output }}", base: "tiny:test"}

`with` is the config of the stage kind `uses` names (`luodi pipeline stages` lists them with
their fields). A string in it may hold `${{ steps.ID.output }}`: the output of stage ID (a
version such as `faq:v3`) is put there when the stage runs, and ID becomes a dependency of the
stage. `needs` adds dependencies that pass nothing (run `register` only after `gate`).
Relative paths in a config are relative to the pipeline file's folder.

`load_pipeline` checks everything that can be checked before anything runs: the YAML, unknown
keys, ids, stage kinds, references, cycles and each stage's config (references replaced by a
placeholder); each problem is a BadInputError naming the stage and the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from luodi.errors import BadInputError
from luodi.store.artifacts import check_name
from luodi.yamlio import read_yaml

HEADER = "# luodi pipeline run {file}\n"
_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
_EXPR = re.compile(r"\$\{\{(.*?)\}\}")
_STEP = re.compile(r"^\s*steps\.([A-Za-z][A-Za-z0-9_-]{0,31})\.output\s*$")


class StageSpec(BaseModel):
    """One stage of a pipeline: which stage function, with what config, after which stages."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(
        description="Unique id in the pipeline (letter first; letters, digits, '_', '-'; "
        "max 32); `${{ steps.ID.output }}` refers to its output."
    )
    uses: str = Field(description="Stage kind: ingest, clean, split, train, eval, gate, ...")
    with_: dict[str, Any] = Field(
        default_factory=dict,
        alias="with",
        description="The stage kind's config; strings may hold `${{ steps.ID.output }}`.",
    )
    needs: list[str] = Field(
        default_factory=list,
        description="Stages that must succeed first (those referenced in `with` are added).",
    )

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError(
                f"invalid stage id {v!r}: start with a letter; letters, digits, '_', '-'; max 32"
            )
        return v


class PipelineSpec(BaseModel):
    """A pipeline file: a name (its runs are recorded under it) and its stages."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Pipeline name; runs are recorded as pipeline_run NAME:vN.")
    description: str | None = Field(default=None, description="What the pipeline makes.")
    stages: list[StageSpec] = Field(min_length=1, description="The stages, in any order.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        try:
            return check_name(v)
        except BadInputError as exc:
            raise ValueError(exc.message) from None

    def to_yaml(self, file: str = "pipeline.yaml") -> str:
        """The spec as YAML beginning with the command that runs it."""
        body = yaml.safe_dump(
            self.model_dump(mode="json", by_alias=True, exclude_none=True),
            allow_unicode=True,
            sort_keys=False,
        )
        return HEADER.format(file=file) + body


@dataclass(frozen=True)
class LoadedPipeline:
    """A checked pipeline: its spec, the folder relative paths start from, the stages in the
    order they run (dependencies first) and each stage's dependencies."""

    spec: PipelineSpec
    base_dir: Path
    order: list[StageSpec]
    deps: dict[str, list[str]]
    file: str | None = None

    def stage(self, stage_id: str) -> StageSpec:
        """The stage with id `stage_id` (it exists: ids are checked at load)."""
        return next(s for s in self.spec.stages if s.id == stage_id)


# -- references -----------------------------------------------------------------------------
def references(value: Any, path: str = "with") -> list[tuple[str, str]]:
    """Every `${{ steps.ID.output }}` in `value` as (field path, ID); an expression of any
    other form is a BadInputError naming the field."""
    found: list[tuple[str, str]] = []
    if isinstance(value, str):
        for m in _EXPR.finditer(value):
            step = _STEP.match(m.group(1))
            if step is None:
                raise BadInputError(
                    f"{path}: unknown expression {m.group(0)!r}; write ${{{{ steps.ID.output }}}}"
                )
            found.append((path, step.group(1)))
    elif isinstance(value, dict):
        for k, v in value.items():
            found += references(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += references(v, f"{path}[{i}]")
    return found


def substitute(value: Any, outputs: dict[str, str]) -> Any:
    """`value` with every `${{ steps.ID.output }}` replaced by `outputs[ID]`."""
    if isinstance(value, str):
        return _EXPR.sub(lambda m: outputs[_STEP.match(m.group(1)).group(1)], value)  # type: ignore[union-attr]
    if isinstance(value, dict):
        return {k: substitute(v, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, outputs) for v in value]
    return value


def anchor(cfg: BaseModel, base_dir: Path) -> BaseModel:
    """`cfg` with its relative Path fields (and lists of them) made relative to `base_dir`."""

    def fix(v: Any) -> Any:
        if isinstance(v, Path) and not v.is_absolute():
            return (base_dir / v.expanduser()).resolve()
        if isinstance(v, list) and v and all(isinstance(x, Path) for x in v):
            return [fix(x) for x in v]
        return v

    update = {}
    for name in type(cfg).model_fields:
        value = getattr(cfg, name)
        fixed = fix(value)
        if fixed is not value:
            update[name] = fixed
    return cfg.model_copy(update=update) if update else cfg


def build_config(model: type[BaseModel], data: dict[str, Any], where: str) -> BaseModel:
    """`model` validated from `data`; a ValidationError becomes a BadInputError naming `where`
    and every bad field (`with.FIELD: problem`)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"with.{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"]
            for e in exc.errors()
        )
        raise BadInputError(f"{where}: {problems}") from None
    except BadInputError as exc:  # validators that raise luodi errors
        raise BadInputError(f"{where}: {exc.message}") from None


# -- loading ----------------------------------------------------------------------------------
def _order(spec: PipelineSpec, deps: dict[str, list[str]], where: str) -> list[StageSpec]:
    """The stages dependencies first, otherwise in file order; a cycle is a BadInputError
    naming it."""
    by_id = {s.id: s for s in spec.stages}
    done: set[str] = set()
    order: list[StageSpec] = []
    while len(order) < len(spec.stages):
        ready = [s for s in spec.stages if s.id not in done and set(deps[s.id]) <= done]
        if not ready:
            left = [s.id for s in spec.stages if s.id not in done]
            raise BadInputError(
                f"{where}: the stages {' -> '.join(_cycle(left, deps))} form a cycle"
            )
        order.append(ready[0])
        done.add(ready[0].id)
    assert set(by_id) == done
    return order


def _cycle(left: list[str], deps: dict[str, list[str]]) -> list[str]:
    """One cycle among `left` (each of which waits on another of them), start repeated."""
    path: list[str] = []
    node = left[0]
    while node not in path:
        path.append(node)
        node = next(d for d in deps[node] if d in left)
    return [*path[path.index(node) :], node]


def check_pipeline(spec: PipelineSpec, base_dir: Path, file: str | None = None) -> LoadedPipeline:
    """Check a parsed spec (see the module docstring) and order its stages."""
    from luodi.pipeline.stages import STAGES

    where = f"pipeline {file or spec.name}"
    seen: set[str] = set()
    for s in spec.stages:
        if s.id in seen:
            raise BadInputError(f"{where}: two stages have the id {s.id!r}; ids must be unique")
        seen.add(s.id)
    deps: dict[str, list[str]] = {}
    for s in spec.stages:
        at = f"{where}: stage {s.id!r}"
        if s.uses not in STAGES:
            raise BadInputError(
                f"{at}: unknown stage kind uses: {s.uses!r}; known: {', '.join(STAGES.names())}"
            )
        try:
            refs = references(s.with_)
        except BadInputError as exc:
            raise BadInputError(f"{at}: {exc.message}") from None
        for field, target in refs:
            if target not in seen:
                raise BadInputError(
                    f"{at}: {field} refers to unknown stage {target!r}; stages: "
                    f"{', '.join(x.id for x in spec.stages)}"
                )
        for need in s.needs:
            if need not in seen:
                raise BadInputError(f"{at}: needs unknown stage {need!r}")
        mine = list(dict.fromkeys([*s.needs, *(t for _, t in refs)]))
        if s.id in mine:
            raise BadInputError(f"{at}: a stage cannot depend on itself")
        deps[s.id] = mine
        kind = STAGES.get(s.uses)
        placeholders = {t: f"{t}:v1" for _, t in refs}
        cfg = build_config(kind.config, substitute(s.with_, placeholders), f"{at} ({s.uses})")
        if kind.check is not None:
            try:
                kind.check(anchor(cfg, base_dir))
            except BadInputError as exc:
                raise BadInputError(f"{at} ({s.uses}): {exc.message}") from None
    order = _order(spec, deps, where)
    return LoadedPipeline(spec=spec, base_dir=base_dir, order=order, deps=deps, file=file)


def parse_pipeline(data: Any, base_dir: Path, file: str | None = None) -> LoadedPipeline:
    """A checked pipeline from parsed YAML data (see `check_pipeline`)."""
    where = f"pipeline {file or '(inline)'}"
    if not isinstance(data, dict):
        raise BadInputError(f"{where} must be a mapping with `name` and `stages`")
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            loc = list(e["loc"])
            if len(loc) >= 2 and loc[0] == "stages" and isinstance(loc[1], int):
                raw = data.get("stages") or []
                sid = raw[loc[1]].get("id") if isinstance(raw[loc[1]], dict) else None
                name = f"stage {sid!r}" if sid else f"stage {loc[1] + 1}"
                rest = ".".join(str(x) for x in loc[2:]) or "stage"
                problems.append(f"{name}: {rest}: {e['msg']}")
            else:
                problems.append(f"{'.'.join(str(x) for x in loc) or 'pipeline'}: {e['msg']}")
        raise BadInputError(f"{where}: {'; '.join(problems)}") from None
    return check_pipeline(spec, base_dir, file)


def load_pipeline(path: str | Path) -> LoadedPipeline:
    """The pipeline in YAML file `path`, checked; relative paths in it start from its folder."""
    p = Path(path)
    data = read_yaml(p, "pipeline file")
    return parse_pipeline(data, p.resolve().parent, str(p))
